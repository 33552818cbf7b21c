#!/usr/bin/env python3
"""Build ``splice_desktop/data/default_vocab.txt``: ~10k single words plus a few thousand two-word phrases.

Sources (all installable from PyPI, no network at build time; see vocab/SOURCES.md for versions and licences):

* single words: ``wordfreq`` English frequencies (the ``best`` = ``large`` list), most frequent first;
* two-word phrases: WordNet 3.0 noun lemmas of the ImageNet-21k synsets as ``timm`` ships them
  (``timm/data/_info/imagenet_synset_to_lemma.txt``), open_clip's ImageNet-1k class names, and torchvision's
  Kinetics-400 action names. No PyPI package ships the full WordNet database (``wn`` and nltk download it at
  run time), so the ImageNet-21k synsets are the WordNet lemmas we can get; they are visual nouns by design.

Filtering: lowercase; ASCII letters only (drops digits, punctuation, contractions); single words of >= 3
letters; stopwords, chat/web tokens and a short profanity/slur blocklist removed (also as parts of phrases);
phrase words must themselves be common (wordfreq Zipf >= 3); WordNet's noun.person synsets are skipped (the
ImageNet person subtree holds offensive labels, and the people phrases left are mostly odd: "end man").

Order (the SpLiCE convention, like the authors' ``laion_bigrams.txt``): the phrase block first, then the
single-word block, each in ascending frequency, so the most frequent single word is the LAST line. A vocabulary
of size k <= number of single words is therefore single words only (the authors' 10k), and the full file adds
the phrases (the paper's 10k words + 5k phrases setup). Phrase ranks have no true bigram counts behind them:
phrases are tiered (ImageNet-1k / Kinetics names, then ImageNet-12k synsets, then other ImageNet-21k synsets,
primary lemmas before secondary ones) and ranked within a tier by wordfreq's estimate for the phrase.

Output is deterministic for fixed package versions (ties break alphabetically).
Usage: ``python vocab/build_vocab.py [--output PATH] [--words 10000] [--phrases 4000] [--check]``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

N_WORDS = 10_000
N_PHRASES = 4_000
CANDIDATE_POOL = 120_000  # wordfreq entries scanned for single words
MIN_PHRASE_WORD_ZIPF = 3.0
PERSON_OFFSETS = (9_600_000, 10_810_000)  # WordNet 3.0 noun.person synset offsets (lexicographer file order)

# Versions the committed file was built with (vocab/SOURCES.md); tests compare a fresh build only under these.
BUILT_WITH = {"wordfreq": "3.1.1", "timm": "1.0.31", "open_clip_torch": "3.3.0", "torchvision": "0.29.1"}

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "splice_desktop" / "data" / "default_vocab.txt"

_WORD = re.compile(r"[a-z]+")
_PHRASE = re.compile(r"[a-z]+ [a-z]+")

# Function words: pronouns, determiners, prepositions, conjunctions, auxiliaries and modal verbs, common adverbs.
STOPWORDS = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also although always am
    among amongst an and another any anybody anyhow anyone anything anyway anywhere are aren around as at back be
    became because become becomes becoming been before beforehand behind being below beside besides between beyond
    both but by can cannot could couldn did didn do does doesn doing don done down due during each either else
    elsewhere enough etc even ever every everybody everyone everything everywhere except few for former formerly
    from further furthermore had hadn has hasn have haven having he hence her here hereafter hereby herein hers
    herself him himself his how however i if in indeed inside instead into is isn it its itself just last latter
    latterly least less let lets like likely may maybe me meanwhile might mine more moreover most mostly much must
    mustn my myself namely neither never nevertheless next no nobody none noone nor not nothing now nowhere of off
    often on once one only onto or other others otherwise our ours ourselves out outside over own per perhaps
    quite rather really same seem seemed seeming seems several shall she should shouldn since so some somebody
    somehow someone something sometime sometimes somewhat somewhere still such than that the their theirs them
    themselves then thence there thereafter thereby therefore therein thereupon these they this those though
    through throughout thru thus till to together too toward towards under unless until up upon us very via was
    wasn we well were weren what whatever when whence whenever where whereafter whereas whereby wherein whereupon
    wherever whether which while whither who whoever whole whom whose why will with within without won would
    wouldn yet you your yours yourself yourselves get gets got gotten getting would also ll ve re
    """.split()
)

# Conversational and web tokens that are frequent in wordfreq's sources but are not depictable concepts.
CHAT_AND_WEB = frozenset(
    """
    yeah yes okay gonna wanna gotta lol lmao omg haha hahaha hey hello bye thanks thank please sorry hmm huh wow
    ooh uh um yep nope yup dont cant wont didnt doesnt isnt thats youre ive im http https www com org net html
    htm php amp nbsp href url jpg png gif pdf etc
    """.split()
)

# A short blocklist of profanity and slurs; also applied to each word of a phrase.
BLOCKLIST = frozenset(
    """
    fuck fucking fucked fucker fucks motherfucker shit shitty bullshit ass asshole arse bitch bitches bastard
    damn goddamn crap piss pissed dick dicks cock cocks pussy cunt twat wanker bollocks slut sluts whore whores
    porn porno xxx nude nudes naked horny milf dildo blowjob handjob cum jizz anal boobs tits titties hentai
    rape raped rapist nigger nigga niggas negro fag fags faggot dyke tranny retard retarded spic chink gook kike
    wetback coon paki beaner raghead towelhead jap
    """.split()
)

REJECT = STOPWORDS | CHAT_AND_WEB | BLOCKLIST


def _timm_info(name: str) -> Path:
    import timm

    return Path(timm.__file__).resolve().parent / "data" / "_info" / name


def source_versions() -> dict[str, str]:
    """Versions of the packages whose data ends up in the file (recorded in SOURCES.md, checked by tests)."""
    return {pkg: importlib.metadata.version(pkg) for pkg in ("wordfreq", "timm", "open_clip_torch", "torchvision")}


def single_words(n: int = N_WORDS) -> list[tuple[str, float]]:
    """The n most frequent acceptable English words as (word, frequency), most frequent first."""
    from wordfreq import top_n_list, word_frequency

    kept: dict[str, float] = {}
    for word in top_n_list("en", CANDIDATE_POOL, wordlist="best"):
        if len(word) < 3 or not _WORD.fullmatch(word) or word in REJECT:
            continue
        kept.setdefault(word, word_frequency(word, "en", wordlist="best"))
    ranked = sorted(kept.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) < n:
        raise SystemExit(f"only {len(ranked)} single words passed the filters; lower --words")
    return ranked[:n]


def _clean_phrase(text: str) -> str | None:
    phrase = " ".join(text.replace("_", " ").replace("-", " ").lower().split())
    if not _PHRASE.fullmatch(phrase):
        return None
    return phrase


def phrase_candidates() -> dict[str, int]:
    """Two-word phrases with a tier (0 = most important): ImageNet-1k/Kinetics, ImageNet-12k, ImageNet-21k."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    tiers: dict[str, int] = {}

    def offer(text: str, tier: int) -> None:
        phrase = _clean_phrase(text)
        if phrase is not None:
            tiers[phrase] = min(tier, tiers.get(phrase, tier))

    for name in list(IMAGENET_CLASSNAMES) + list(_KINETICS400_CATEGORIES):
        offer(name, 0)
    in_12k = set(_timm_info("imagenet12k_synsets.txt").read_text(encoding="utf-8").split())
    for line in _timm_info("imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines():
        synset, _, lemmas = line.partition("\t")
        offset = int(synset[1:])
        if PERSON_OFFSETS[0] <= offset < PERSON_OFFSETS[1]:
            continue
        for position, lemma in enumerate(lemmas.split(",")):
            if re.search(r"[A-Z]", lemma.strip()[1:]) or (lemma.strip()[:1].isupper() and position > 0):
                continue  # taxonomic / proper-name variants such as "Felis catus" or "Laguncularia racemosa"
            tier = (1 if synset in in_12k else 2) + (2 if position > 0 else 0)
            offer(lemma, tier)
    return tiers


def ranked_phrases(n: int = N_PHRASES) -> list[tuple[str, int, float]]:
    """Up to n phrases as (phrase, tier, estimated frequency), most important first."""
    from wordfreq import word_frequency, zipf_frequency

    out = []
    for phrase, tier in phrase_candidates().items():
        words = phrase.split()
        if any(w in REJECT or len(w) < 2 for w in words):
            continue
        if any(zipf_frequency(w, "en", wordlist="best") < MIN_PHRASE_WORD_ZIPF for w in words):
            continue
        out.append((phrase, tier, word_frequency(phrase, "en", wordlist="best")))
    out.sort(key=lambda item: (item[1], -item[2], item[0]))
    return out[:n]


def build(n_words: int = N_WORDS, n_phrases: int = N_PHRASES) -> list[str]:
    """The file's lines: phrase block then single-word block, each ascending (most important last)."""
    words = [w for w, _ in single_words(n_words)]
    phrases = [p for p, _, _ in ranked_phrases(n_phrases)]
    lines = list(reversed(phrases)) + list(reversed(words))
    if len(set(lines)) != len(lines):
        raise SystemExit("internal error: duplicate concepts")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--words", type=int, default=N_WORDS)
    parser.add_argument("--phrases", type=int, default=N_PHRASES)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output differs from a fresh build")
    args = parser.parse_args(argv)

    text = "\n".join(build(args.words, args.phrases)) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    versions = ", ".join(f"{k} {v}" for k, v in source_versions().items())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        same = current == text
        print(f"{args.output}: {'up to date' if same else 'DIFFERS from a fresh build'} ({versions})")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    tmp.replace(args.output)
    n = text.count("\n")
    print(f"wrote {args.output}: {n} concepts, sha256 {digest} ({versions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
