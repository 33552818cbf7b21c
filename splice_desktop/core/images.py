"""Robust image decoding: any common file -> an RGB PIL image, or an ImageLoadError that says why in plain words.

Users drop whole camera folders on the app, so every odd case must either decode correctly (EXIF rotation,
palette/alpha/CMYK/16-bit/float modes, animated files) or fail with a reason a person understands, while a
batch carries on. ``target_size`` turns on JPEG draft mode (the decoder's DCT scaling): a 12 MP photo decodes
at 1/2..1/8 scale, about 4x faster, and still has at least ``target_size`` pixels on its shorter side.
``read_with_digest`` + ``load_image(..., data=...)`` hash and decode one in-memory copy of the file, so the encode
pipeline reads each file once instead of once for the cache key and again for the decoder.
"""

from __future__ import annotations

import errno
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from splice_desktop.core.cache import sha256_bytes, sha256_file, sha256_stream
from splice_desktop.core.errors import ImageLoadError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
)
MAX_PIXELS = 120_000_000  # 120 MP: above any camera, far below what exhausts memory (a bomb is often gigapixels)
# Files up to this size are read once into memory, hashed and decoded from those bytes; larger ones (rare: big
# TIFF/PNG scans) are hashed in a stream and decoded from disk, so RAM per decode thread stays bounded.
WHOLE_READ_BYTES = 64 << 20

# Our own guard (with a readable message) replaces Pillow's 89 MP warning / 179 MP error for normal use;
# Pillow's check stays as a backstop at twice the limit.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_WHITE = (255, 255, 255)

# File signatures, to say what a file that Pillow cannot identify actually is.
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_OTHER_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
)
# ISO media "ftyp" brands (at byte 4) of photo formats Pillow does not read here.
_FTYP_BRANDS = {
    b"heic": "a HEIC photo", b"heix": "a HEIC photo", b"mif1": "a HEIF photo", b"msf1": "a HEIF photo",
    b"avif": "an AVIF image", b"avis": "an AVIF image",
}


@dataclass
class CollectResult:
    """Files to process, in a stable order, plus explicitly named paths that were rejected and why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[ImageLoadError] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- collecting


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _sort_key(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


def _walk(folder: Path, files: list[Path], skipped: list[ImageLoadError], seen_dirs: set[str]) -> None:
    """Files of ``folder`` sorted by name, then each sub-folder the same way (symlink loops visited once)."""
    real = os.path.realpath(folder)
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not _is_hidden(e.name)]
    except PermissionError:
        skipped.append(ImageLoadError(folder, "cannot read this folder (permission denied)"))
        return
    except OSError as exc:
        skipped.append(ImageLoadError(folder, f"cannot read this folder ({exc.strerror or exc})"))
        return
    entries.sort(key=lambda e: _sort_key(e.name))
    subdirs: list[Path] = []
    for entry in entries:
        try:
            if entry.is_dir():
                subdirs.append(Path(entry.path))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                files.append(Path(entry.path))
        except OSError:
            continue  # a vanished or broken entry is simply not collected
    for sub in subdirs:
        _walk(sub, files, skipped, seen_dirs)


def collect_image_files(paths: Iterable[str | Path]) -> CollectResult:
    """Expand files and folders into image files: recursive, hidden entries skipped, order stable, no duplicates.

    Inside folders, non-image files are skipped silently; a path the user named explicitly that is missing or
    not an image type is reported in ``skipped`` so the user learns why it was not processed.
    """
    result = CollectResult()
    seen_dirs: set[str] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            _walk(path, result.files, result.skipped, seen_dirs)
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                result.files.append(path)
            else:
                kind = f"'{suffix}'" if suffix else "no extension"
                result.skipped.append(
                    ImageLoadError(
                        path,
                        f"not an image file type ({kind}); supported: "
                        + ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)),
                    )
                )
        elif path.exists():
            result.skipped.append(ImageLoadError(path, "not a regular file"))
        else:
            result.skipped.append(ImageLoadError(path, "file not found"))
    unique: list[Path] = []
    seen_files: set[str] = set()
    for f in result.files:
        key = os.path.realpath(f)
        if key not in seen_files:
            seen_files.add(key)
            unique.append(f)
    result.files = unique
    return result


# ----------------------------------------------------------------------------------------------- decoding


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(exc, PermissionError) or exc.errno == errno.EACCES:
        return "cannot read the file (permission denied)"
    return f"cannot read the file ({exc.strerror or exc})"


def _head(path: Path, data: Optional[bytes], n: int) -> bytes:
    """The first ``n`` bytes: from ``data`` when the caller already read the file, else from disk (may raise)."""
    if data is not None:
        return data[:n]
    with open(path, "rb") as handle:
        return handle.read(n)


def _magic_format(path: Path, data: Optional[bytes] = None) -> Optional[str]:
    try:
        head = _head(path, data, 16)
    except OSError:
        return None
    for magic, fmt in _IMAGE_MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _sniff(path: Path, data: Optional[bytes] = None) -> str:
    """Reason for a file Pillow could not identify, from its first bytes (``data``: the content, if already read)."""
    try:
        head = _head(path, data, 512)
    except OSError as exc:
        return _os_reason(exc)
    if not head:
        return "file is empty"
    for magic, fmt in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"truncated or corrupt {fmt} data (the file starts like a {fmt} but its header cannot be read)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "truncated or corrupt WebP data (the header cannot be read)"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return f"{_FTYP_BRANDS[head[8:12]]}, which this app cannot read; convert it to JPEG or PNG"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return f"not an image (looks like {what})"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            text = True
        except UnicodeDecodeError as exc:
            text = exc.start >= len(head) - 4  # a multi-byte character cut by the 512-byte window
        if text:
            if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
                return "not an image (looks like an HTML page, e.g. a failed download)"
            if head.lstrip().startswith(b"<svg") or b"<svg" in head:
                return "not a supported image (SVG vector images are not supported; export it as PNG)"
            return "not an image (looks like text)"
    return "not a recognised image format (unknown or corrupt file)"


def _scale_to_uint8(arr: np.ndarray, full_scale: Optional[float]) -> np.ndarray:
    """Map integer/float pixel data to 0..255: by the format's full scale when known, else by its min..max."""
    arr = arr.astype(np.float32, copy=False)
    if full_scale is None:
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo >= 0.0 and hi <= 1.0:
            full_scale = 1.0
        elif lo >= 0.0 and hi <= 255.0:
            full_scale = 255.0
        elif lo >= 0.0 and hi <= 65535.0:
            full_scale = 65535.0
        else:  # arbitrary range (e.g. signed or HDR data): stretch what is there
            arr = arr - lo
            full_scale = max(hi - lo, 1e-12)
    out = np.nan_to_num(arr * (255.0 / full_scale), nan=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16-bit and float scaled (not clipped), CMYK converted."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        return _composite_on_white(img)  # includes PNG tRNS colour keys on palette, grey and RGB images
    if mode == "RGB":
        return img
    if mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(img), 65535.0)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(img), None)
        return Image.fromarray(grey, "L").convert("RGB")
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def _check_pixels(path: Path, img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(path, f"image has no pixels ({w} x {h})")
    if max_pixels and w * h > max_pixels:
        raise ImageLoadError(
            path,
            f"image too large: {w} x {h} = {w * h / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit "
            "(protects against decompression bombs)",
        )


def _bomb_reason(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too many pixels"
    return f"image too large: {size} (refused as a possible decompression bomb; limit {MAX_PIXELS / 1e6:.0f} MP)"


def load_image(
    path: str | Path,
    target_size: Optional[int] = None,
    max_pixels: int = MAX_PIXELS,
    data: Optional[bytes] = None,
) -> Image.Image:
    """Decode ``path`` to an RGB image, EXIF orientation applied, first frame of animations.

    ``target_size``: JPEGs are decoded at the smallest DCT scale whose shorter side is still >= target_size.
    ``data``: the file's content when the caller already read it (see ``read_with_digest``): decoding from those
    bytes saves a second read of the file. Raises ImageLoadError with a human reason for anything unreadable.
    """
    path = Path(path)
    if data is not None:
        if not data:
            raise ImageLoadError(path, "file is empty")
        return _decode(path, io.BytesIO(data), target_size, max_pixels, data)
    if path.is_dir():
        raise ImageLoadError(path, "is a folder, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(path, _os_reason(exc)) from exc
    if size == 0:
        raise ImageLoadError(path, "file is empty")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ImageLoadError(path, _os_reason(exc)) from exc
    return _decode(path, handle, target_size, max_pixels, None)


def _decode(path: Path, handle: BinaryIO, target_size: Optional[int], max_pixels: int,
            data: Optional[bytes]) -> Image.Image:
    """Open, size-check, draft, load, rotate and convert; every Pillow failure becomes an ImageLoadError."""
    fmt = "image"
    try:
        with handle:
            try:
                img = Image.open(handle)
            except UnidentifiedImageError as exc:
                raise ImageLoadError(path, _sniff(path, data)) from exc
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageLoadError(path, _bomb_reason(exc)) from exc
            fmt = img.format or fmt
            _check_pixels(path, img, max_pixels)
            # Animated files open at frame 0, which is the frame we use (asking n_frames would scan the file).
            if target_size and fmt == "JPEG":
                # Orientation-independent request: both sides >= target, so the shorter side stays >= target.
                img.draft("RGB", (int(target_size), int(target_size)))
            img.load()
            try:
                img = ImageOps.exif_transpose(img) or img
            except Exception:  # noqa: BLE001 - malformed EXIF: the pixels are fine, keep them unrotated
                pass
            return to_rgb(img)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, _bomb_reason(exc)) from exc
    except MemoryError as exc:
        raise ImageLoadError(path, "not enough memory to decode this image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError) as exc:
        # Pillow signals broken data with a zoo of exception types; the message decides truncated vs corrupt.
        text = str(exc)
        if fmt == "image":  # failed inside Image.open: name the format from the file signature
            fmt = _magic_format(path, data) or fmt
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            raise ImageLoadError(path, f"truncated {fmt} data (the file is incomplete; copy or download it again)") from exc
        raise ImageLoadError(path, f"corrupt {fmt} data ({type(exc).__name__}: {text or 'no details'})") from exc


def read_with_digest(path: str | Path, limit: int = WHOLE_READ_BYTES) -> tuple[str, Optional[bytes]]:
    """(sha256, content) from one read: the cache key and the bytes to decode, without reading the file twice.

    Files larger than ``limit`` are hashed in 1 MiB blocks and the content is returned as None (decode from disk).
    """
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > limit:
                return sha256_stream(handle), None
            data = handle.read()
    except OSError as exc:
        raise ImageLoadError(path, _os_reason(exc)) from exc
    return sha256_bytes(data), data


def file_digest(path: str | Path) -> str:
    """sha256 of the file content: the identity of an image for every cache, robust to renames and moves."""
    try:
        return sha256_file(path)
    except OSError as exc:
        raise ImageLoadError(path, _os_reason(exc)) from exc


def make_thumbnail(path: str | Path, size: int = 128) -> Image.Image:
    """A small RGB preview whose longer side is ``size``; JPEGs decode in draft mode, so this is cheap."""
    img = load_image(path, target_size=size)
    img.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img
