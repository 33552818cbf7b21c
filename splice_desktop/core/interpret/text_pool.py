"""The project's own TEXTSPAN description pool, generated from templates, and a loader for user pool files.

Why generated: the published 3,498-line pool came from ChatGPT and is not shipped. A template pool covers the same
kinds of property (colour, place, object, animal, texture, count, style, material, weather, time of day, art medium,
mood, profession, letters, numbers, shapes, viewpoint) with fixed, reviewable wording. Generation is deterministic,
so its sha256 (and every TEXTSPAN cache keyed by it) is stable across runs and machines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from splice_desktop.core.errors import SpliceError

POOL_VERSION = 1


class TextPoolError(SpliceError):
    """A text pool file is unusable (missing, not UTF-8, empty)."""


@dataclass(frozen=True)
class TextPool:
    texts: tuple[str, ...]
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)


COLOURS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gold",
    "silver", "turquoise", "beige", "maroon", "navy blue", "teal", "lavender", "olive green", "crimson", "cyan",
    "magenta", "pastel", "neon", "sepia", "monochrome", "rainbow",
)
PLACES = (
    "Paris, France", "Tokyo, Japan", "New York City", "London, England", "Rome, Italy", "Cairo, Egypt",
    "Rio de Janeiro, Brazil", "Sydney, Australia", "Mumbai, India", "Beijing, China", "Moscow, Russia",
    "Istanbul, Turkey", "Bangkok, Thailand", "Seoul, South Korea", "Mexico City", "Buenos Aires, Argentina",
    "Cape Town, South Africa", "Nairobi, Kenya", "Reykjavik, Iceland", "Amsterdam, Netherlands", "Berlin, Germany",
    "Madrid, Spain", "Lisbon, Portugal", "Athens, Greece", "Dubai, UAE", "Singapore", "Hong Kong", "Hanoi, Vietnam",
    "Lima, Peru", "Havana, Cuba", "Marrakech, Morocco", "Stockholm, Sweden", "Vienna, Austria", "Prague, Czech Republic",
    "Venice, Italy", "San Francisco", "Los Angeles", "Chicago", "Toronto, Canada", "Vancouver, Canada",
    "the Sahara desert", "the Amazon rainforest", "the Alps", "the Himalayas", "the Grand Canyon", "Antarctica",
    "the Scottish Highlands", "the Norwegian fjords", "a Greek island", "a Caribbean beach",
)
SCENES = (
    "a beach", "a forest", "a desert", "a mountain", "a city street", "a kitchen", "a living room", "a bedroom",
    "an office", "a classroom", "a library", "a supermarket", "a restaurant", "a cafe", "a farm", "a garden",
    "a park", "a harbour", "an airport", "a train station", "a highway", "a bridge", "a river", "a lake",
    "a waterfall", "a cave", "a stadium", "a church", "a temple", "a castle", "a museum", "a hospital",
    "a factory", "a construction site", "a parking lot", "a playground", "a swimming pool", "a snowy field",
    "a jungle", "a village", "a skyscraper rooftop", "an underwater reef", "a market", "a concert stage",
    "a laboratory", "a bathroom", "a garage", "a subway", "a vineyard", "a lighthouse",
)
OBJECTS = (
    "car", "bicycle", "motorcycle", "bus", "train", "airplane", "boat", "truck", "chair", "table", "sofa", "bed",
    "lamp", "clock", "watch", "phone", "laptop", "keyboard", "television", "camera", "book", "cup", "bottle",
    "plate", "knife", "fork", "spoon", "umbrella", "backpack", "handbag", "suitcase", "hat", "shoe", "dress",
    "shirt", "guitar", "piano", "violin", "drum", "ball", "kite", "skateboard", "surfboard", "tennis racket",
    "pizza", "cake", "sandwich", "apple", "banana", "orange", "flower", "tree", "house", "door", "window",
    "fence", "road sign", "traffic light", "candle", "mirror", "vase", "key", "coin", "ring", "necklace",
    "sword", "helmet", "toy", "balloon", "tent", "ladder", "hammer", "scissors", "pen", "map", "flag",
)
ANIMALS = (
    "dog", "cat", "horse", "cow", "sheep", "pig", "goat", "chicken", "duck", "goose", "rabbit", "mouse",
    "squirrel", "deer", "fox", "wolf", "bear", "panda", "koala", "kangaroo", "lion", "tiger", "leopard",
    "cheetah", "elephant", "giraffe", "zebra", "rhinoceros", "hippopotamus", "monkey", "gorilla", "camel",
    "owl", "eagle", "parrot", "penguin", "flamingo", "swan", "pigeon", "hummingbird", "fish", "shark",
    "dolphin", "whale", "octopus", "crab", "turtle", "frog", "snake", "lizard", "butterfly", "bee", "spider",
    "ladybug", "jellyfish", "seal",
)
TEXTURES = (
    "striped", "spotted", "checkered", "dotted", "wavy", "zigzag", "swirly", "furry", "fluffy", "smooth",
    "rough", "bumpy", "wrinkled", "cracked", "glossy", "matte", "shiny", "rusty", "scaly", "woven", "knitted",
    "grainy", "porous", "crystalline", "marbled", "honeycomb", "mesh", "lacy", "polka dot", "plaid",
)
MATERIALS = (
    "wood", "metal", "glass", "plastic", "stone", "marble", "concrete", "brick", "paper", "cardboard",
    "leather", "silk", "cotton", "wool", "denim", "rubber", "ceramic", "porcelain", "gold", "silver", "copper",
    "steel", "bamboo", "clay", "ice", "sand", "fabric", "velvet",
)
WEATHER = (
    "sunny", "rainy", "snowy", "foggy", "cloudy", "stormy", "windy", "misty", "overcast", "hazy",
    "thundery", "icy", "humid", "clear-sky",
)
TIMES = (
    "at sunrise", "in the early morning", "at noon", "in the afternoon", "at golden hour", "at sunset",
    "at dusk", "at night", "at midnight", "during the blue hour", "in spring", "in summer", "in autumn", "in winter",
)
STYLES = (
    "photorealistic", "impressionist", "cubist", "surrealist", "pop art", "art nouveau", "art deco", "baroque",
    "minimalist", "abstract", "expressionist", "vintage", "retro", "futuristic", "cyberpunk", "steampunk",
    "gothic", "renaissance", "anime", "cartoon", "comic book", "pixel art", "low poly", "ukiyo-e", "folk art",
    "graffiti", "psychedelic", "noir", "Victorian", "Bauhaus",
)
MEDIA = (
    "oil painting", "watercolor painting", "pencil sketch", "charcoal drawing", "ink drawing", "pastel drawing",
    "acrylic painting", "digital painting", "3D render", "photograph", "black and white photograph",
    "polaroid photo", "film photograph", "mosaic", "stained glass", "woodcut print", "linocut", "collage",
    "embroidery", "sculpture", "bronze statue", "clay model", "origami", "tapestry", "fresco", "blueprint",
    "infographic", "screenshot", "x-ray image", "thermal image", "satellite image", "microscope image",
    "children's drawing", "tattoo design", "poster", "postcard", "book cover", "album cover", "logo", "map",
)
MOODS = (
    "happy", "sad", "peaceful", "calm", "chaotic", "romantic", "mysterious", "eerie", "spooky", "joyful",
    "melancholic", "dramatic", "cozy", "lonely", "festive", "energetic", "nostalgic", "serene", "tense", "playful",
)
PROFESSIONS = (
    "doctor", "nurse", "chef", "teacher", "firefighter", "police officer", "soldier", "farmer", "fisherman",
    "pilot", "astronaut", "scientist", "engineer", "artist", "musician", "dancer", "athlete", "photographer",
    "mechanic", "carpenter", "construction worker", "waiter", "barber", "judge", "priest", "student",
)
PEOPLE = (
    "a baby", "a child", "a teenager", "a young woman", "a young man", "an old woman", "an old man",
    "a couple", "a family", "a crowd", "a group of friends", "a bride and groom", "twins", "a sports team",
)
COUNTS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "a dozen", "many", "hundreds of")
SHAPES = (
    "circles", "squares", "triangles", "rectangles", "hexagons", "stars", "hearts", "spirals", "diagonal lines",
    "vertical lines", "horizontal lines", "curves", "grids", "concentric rings", "arrows", "crosses",
)
VIEWS = (
    "a close-up", "a macro shot", "an aerial view", "a bird's-eye view", "a wide-angle shot", "a panorama",
    "a portrait", "a selfie", "a low-angle shot", "a top-down view", "a silhouette", "a reflection",
    "a blurry photo", "a long-exposure photo", "a tilt-shift photo", "a fisheye photo", "a cropped photo",
    "an overexposed photo", "an underexposed photo", "a photo with bokeh",
)
FOODS = (
    "sushi", "pasta", "tacos", "curry", "noodles", "burgers", "salad", "soup", "bread", "cheese", "ice cream",
    "chocolate", "coffee", "tea", "wine", "beer", "fruit", "vegetables", "steak", "dumplings", "pancakes",
)
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
NUMBERS = tuple(str(n) for n in range(10)) + ("10", "12", "21", "42", "100", "2024")
LANGUAGES = (
    "Chinese characters", "Japanese text", "Arabic script", "Cyrillic letters", "Hebrew letters", "Greek letters",
    "Hindi text", "Korean text", "Latin letters", "handwritten text", "a printed newspaper page", "a street sign with text",
)
ACTIVITIES = (
    "running", "swimming", "cycling", "skiing", "surfing", "climbing", "dancing", "cooking", "reading", "sleeping",
    "eating", "playing football", "playing basketball", "playing chess", "painting", "singing", "fishing",
    "hiking", "camping", "shopping", "driving", "flying a kite", "taking a photo", "working on a laptop",
)


def _generate() -> list[str]:
    lines: list[str] = []
    for c in COLOURS:
        lines += [f"Image with a {c} color", f"A photo dominated by {c} tones", f"Something {c} in the picture"]
    for c1 in COLOURS[:14]:
        for c2 in COLOURS[:14]:
            if c1 < c2:
                lines.append(f"An image in {c1} and {c2}")
    for p in PLACES:
        lines += [f"Picture taken in {p}", f"A street scene in {p}", f"A landmark of {p}"]
    for s in SCENES:
        lines += [f"A photo of {s}", f"An empty {s[2:] if s.startswith('a ') else s[3:]}"]
        for t in TIMES[:9]:
            lines.append(f"{s[0].upper()}{s[1:]} {t}")
    for o in OBJECTS:
        lines += [f"A photo of a {o}", f"A close-up of a {o}", f"A broken {o}", f"A {o} on a table"]
    for a in ANIMALS:
        lines += [f"A photo of a {a}", f"A baby {a}", f"A {a} in the wild", f"A drawing of a {a}"]
    for tex in TEXTURES:
        lines += [f"A {tex} pattern", f"A {tex} texture", f"A {tex} surface"]
    for m in MATERIALS:
        lines += [f"An object made of {m}", f"A {m} texture close-up", f"Something built from {m}"]
    for w in WEATHER:
        lines += [f"A {w} day", f"A {w} landscape", f"A city on a {w} day"]
    for t in TIMES:
        lines += [f"A photo taken {t}", f"A landscape {t}"]
    for st in STYLES:
        lines += [f"A {st} style picture", f"A {st} artwork", f"A {st} poster"]
    for me in MEDIA:
        art = "an" if me[0] in "aeiou" else "a"
        lines += [f"An image of {art} {me}", f"A {me} of a landscape", f"A {me} of a person"]
    for mo in MOODS:
        lines += [f"A {mo} scene", f"A {mo} atmosphere", f"A photo with a {mo} mood"]
    for pr in PROFESSIONS:
        art = "an" if pr[0] in "aeiou" else "a"
        lines += [f"A photo of {art} {pr}", f"{art.capitalize()} {pr} at work", f"A portrait of {art} {pr}"]
    for pe in PEOPLE:
        lines += [f"A photo of {pe}", f"{pe[0].upper()}{pe[1:]} smiling", f"{pe[0].upper()}{pe[1:]} outdoors"]
    for n in COUNTS:
        lines += [f"An image with {n} people", f"An image with {n} objects", f"A picture of {n} animals"]
        for o in ("cars", "birds", "flowers", "trees", "windows", "balls", "dogs", "cats"):
            lines.append(f"{n[0].upper()}{n[1:]} {o}")
    for sh in SHAPES:
        lines += [f"An image with {sh}", f"A pattern of {sh}", f"Geometric {sh}"]
    for v in VIEWS:
        lines += [f"{v[0].upper()}{v[1:]}", f"{v[0].upper()}{v[1:]} of a city", f"{v[0].upper()}{v[1:]} of nature"]
    for f in FOODS:
        lines += [f"A plate of {f}", f"A photo of {f}", f"{f[0].upper()}{f[1:]} on a table"]
    for letter in LETTERS:
        lines += [f"The letter {letter}", f"A sign with the letter {letter}"]
    for num in NUMBERS:
        on_wall = f"The digit {num} written on a wall" if len(num) == 1 else f"The number {num} on a sign"
        lines += [f"An image of the number {num}", on_wall]
    for la in LANGUAGES:
        lines += [f"An image with {la}", f"A sign with {la}"]
    for ac in ACTIVITIES:
        lines += [f"A person {ac}", f"People {ac}", f"A child {ac}"]
    for c in COLOURS[:12]:
        for o in ("car", "dress", "flower", "house", "bird", "sky", "door", "ball"):
            lines.append(f"A {c} {o}")
    for me in MEDIA[:12]:
        for a in ANIMALS[:8]:
            lines.append(f"A {me} of a {a}")
    return lines


def _dedupe(lines: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        clean = " ".join(line.split())
        if clean and clean not in seen:
            seen.add(clean)
            out.append(clean)
    return tuple(out)


def _sha(texts: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def default_text_pool() -> TextPool:
    """The generated pool (a few thousand lines, deterministic)."""
    texts = _dedupe(_generate())
    return TextPool(texts=texts, source=f"generated-v{POOL_VERSION}", sha256=_sha(texts))


def pool_from_texts(texts: Iterable[str], source: str = "custom") -> TextPool:
    t = _dedupe(texts)
    if not t:
        raise TextPoolError(f"The text pool {source!r} is empty after removing blank and duplicate lines.")
    return TextPool(texts=t, source=source, sha256=_sha(t))


def load_text_pool(path: str | Path) -> TextPool:
    """Load any one-description-per-line UTF-8 file (e.g. TEXTSPAN's image_descriptions_general.txt)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TextPoolError(f"Text pool file not found: {p}. Choose an existing .txt file.") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise TextPoolError(f"Cannot read text pool {p}: {exc.strerror or exc}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TextPoolError(f"Text pool {p.name} is not UTF-8 text. Save it as UTF-8, one description per line.") from None
    return pool_from_texts(text.splitlines(), source=str(p))
