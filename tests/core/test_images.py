"""Decoding odd but valid images to the right RGB pixels, and turning every kind of bad file into a clear reason.

All files are generated here, so the corpus documents exactly which cases are covered.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splice_desktop.core.errors import ImageLoadError
from splice_desktop.core.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    collect_image_files,
    file_digest,
    load_image,
    make_thumbnail,
    read_with_digest,
)

# ------------------------------------------------------------------------------------------ odd valid images


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def _rgba_transparent(p: Path) -> Path:
    return _save(Image.new("RGBA", (8, 6), (0, 0, 0, 0)), p / "a.png", "PNG")


def _rgba_half(p: Path) -> Path:
    return _save(Image.new("RGBA", (8, 6), (0, 0, 0, 128)), p / "a.png", "PNG")


def _la_transparent(p: Path) -> Path:
    return _save(Image.new("LA", (8, 6), (0, 0)), p / "a.png", "PNG")


def _palette_transparent(p: Path) -> Path:
    img = Image.new("P", (8, 6), 0)
    img.putpalette([10, 20, 30] + [200, 0, 0] * 255)
    return _save(img, p / "a.png", "PNG", transparency=0)


def _palette_opaque(p: Path) -> Path:
    img = Image.new("P", (8, 6), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    return _save(img, p / "a.gif", "GIF")


def _rgb_colour_key(p: Path) -> Path:
    return _save(Image.new("RGB", (8, 6), (255, 0, 0)), p / "a.png", "PNG", transparency=(255, 0, 0))


def _grey(p: Path) -> Path:
    return _save(Image.new("L", (8, 6), 100), p / "a.bmp", "BMP")


def _bilevel(p: Path) -> Path:
    return _save(Image.new("1", (8, 6), 1), p / "a.tiff", "TIFF")


def _grey16(p: Path) -> Path:
    return _save(Image.fromarray(np.full((6, 8), 128 * 257, np.uint16)), p / "a.png", "PNG")


def _grey16_white(p: Path) -> Path:
    return _save(Image.fromarray(np.full((6, 8), 65535, np.uint16)), p / "a.tif", "TIFF")


def _int32(p: Path) -> Path:
    return _save(Image.fromarray(np.full((6, 8), 64 * 257, np.int32), "I"), p / "a.tif", "TIFF")


def _float(p: Path) -> Path:
    return _save(Image.fromarray(np.full((6, 8), 0.5, np.float32), "F"), p / "a.tif", "TIFF")


def _cmyk_tiff(p: Path) -> Path:
    return _save(Image.new("CMYK", (8, 6), (255, 0, 0, 0)), p / "a.tif", "TIFF")


def _cmyk_jpeg(p: Path) -> Path:
    return _save(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), p / "a.jpg", "JPEG", quality=95)


def _webp(p: Path) -> Path:
    return _save(Image.new("RGB", (8, 6), (0, 0, 255)), p / "a.webp", "WEBP", lossless=True)


def _animated(p: Path) -> Path:
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(p / "a.gif", "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return p / "a.gif"


def _animated_webp(p: Path) -> Path:
    frames = [Image.new("RGB", (8, 6), c) for c in ((0, 255, 0), (255, 0, 0))]
    frames[0].save(p / "a.webp", "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return p / "a.webp"


ODD_MODES = [
    pytest.param(_rgba_transparent, (255, 255, 255), 0, id="rgba-transparent-becomes-white"),
    pytest.param(_rgba_half, (127, 127, 127), 1, id="rgba-half-alpha-over-white"),
    pytest.param(_la_transparent, (255, 255, 255), 0, id="la-transparent-becomes-white"),
    pytest.param(_palette_transparent, (255, 255, 255), 0, id="palette-transparent-index-white"),
    pytest.param(_palette_opaque, (10, 200, 30), 0, id="palette-gif"),
    pytest.param(_rgb_colour_key, (255, 255, 255), 0, id="rgb-png-colour-key-white"),
    pytest.param(_grey, (100, 100, 100), 0, id="greyscale-bmp"),
    pytest.param(_bilevel, (255, 255, 255), 0, id="bilevel-tiff"),
    pytest.param(_grey16, (128, 128, 128), 0, id="16bit-png-scaled-not-clipped"),
    pytest.param(_grey16_white, (255, 255, 255), 0, id="16bit-tiff-full-scale"),
    pytest.param(_int32, (64, 64, 64), 0, id="int32-tiff-16bit-range"),
    pytest.param(_float, (128, 128, 128), 1, id="float-tiff-0-1-range"),
    pytest.param(_cmyk_tiff, (0, 255, 255), 0, id="cmyk-tiff-cyan"),
    pytest.param(_cmyk_jpeg, (255, 255, 255), 3, id="cmyk-jpeg-white"),
    pytest.param(_webp, (0, 0, 255), 0, id="webp"),
    pytest.param(_animated, (255, 0, 0), 0, id="animated-gif-first-frame"),
    pytest.param(_animated_webp, (0, 255, 0), 0, id="animated-webp-first-frame"),
]


@pytest.mark.parametrize(("make", "expected", "tol"), ODD_MODES)
def test_odd_modes_become_correct_rgb(tmp_path: Path, make, expected, tol) -> None:
    img = load_image(make(tmp_path))
    assert img.mode == "RGB"
    arr = np.asarray(img).astype(int)
    assert np.abs(arr - np.array(expected)).max() <= tol, arr[0, 0]


def _exif_jpeg(path: Path, orientation: int) -> Path:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = (255, 0, 0)  # stored left half red
    arr[:, 40:] = (0, 0, 255)  # stored right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def test_exif_rotation_swaps_size_and_moves_pixels(tmp_path: Path) -> None:
    img = load_image(_exif_jpeg(tmp_path / "rot.jpg", 6))  # 6 = display rotated 90 degrees clockwise
    assert img.size == (40, 80)
    arr = np.asarray(img).astype(int)
    assert arr[5, 20, 0] > 200 and arr[5, 20, 2] < 60  # stored left (red) is now on top
    assert arr[75, 20, 2] > 200 and arr[75, 20, 0] < 60
    plain = load_image(_exif_jpeg(tmp_path / "plain.jpg", 1))
    assert plain.size == (80, 40)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(
    "exif",
    [
        pytest.param(b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12", id="exif-cut-short"),
        pytest.param(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", id="exif-offset-out-of-range"),
        pytest.param(b"Exif\x00\x00garbage!", id="exif-garbage"),
    ],
)
def test_malformed_exif_still_loads(tmp_path: Path, exif: bytes) -> None:
    Image.new("RGB", (20, 10), (200, 30, 30)).save(tmp_path / "e.jpg", "JPEG", exif=exif, quality=95)
    img = load_image(tmp_path / "e.jpg")
    assert img.size == (20, 10) and np.abs(np.asarray(img)[5, 10].astype(int) - (200, 30, 30)).max() <= 4


def test_exif_rotation_applies_with_draft_mode(tmp_path: Path) -> None:
    arr = np.zeros((1200, 1600, 3), np.uint8)
    arr[:, :800] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(arr).save(tmp_path / "big.jpg", "JPEG", exif=exif.tobytes())
    img = load_image(tmp_path / "big.jpg", target_size=224)
    w, h = img.size
    assert h > w and min(w, h) >= 224 and max(w, h) < 1600


def test_draft_mode_reduces_but_keeps_target_resolution(photo_factory) -> None:
    path = photo_factory("cam.jpg", size=(2400, 1600))
    full = load_image(path)
    small = load_image(path, target_size=224)
    assert full.size == (2400, 1600)
    assert min(small.size) >= 224 and small.size[0] < 2400
    assert small.size[0] / small.size[1] == pytest.approx(1.5, rel=0.01)
    # Non-JPEG formats ignore the draft request and keep full size.
    png = photo_factory("cam.png", size=(600, 400), fmt="PNG")
    assert load_image(png, target_size=224).size == (600, 400)


# ------------------------------------------------------------------------------------------ bad files


def _png_header_only(w: int, h: int) -> bytes:
    """A valid PNG signature + IHDR announcing w x h, with a tiny IDAT: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _jpeg_bytes() -> bytes:
    arr = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write(name: str, data: bytes):
    def make(p: Path) -> Path:
        (p / name).write_bytes(data)
        return p / name

    return make


def _directory(p: Path) -> Path:
    (p / "folder.jpg").mkdir()
    return p / "folder.jpg"


def _missing(p: Path) -> Path:
    return p / "nope.jpg"


def _corrupt_jpeg_body(p: Path) -> Path:
    data = bytearray(_jpeg_bytes())
    rng = np.random.default_rng(1)
    data[600:] = rng.integers(0, 256, len(data) - 600, dtype=np.uint8).tobytes()
    (p / "c.jpg").write_bytes(bytes(data))
    return p / "c.jpg"


BAD_FILES = [
    pytest.param(_write("empty.jpg", b""), "file is empty", id="empty-file"),
    pytest.param(_write("notes.jpg", b"shopping list\neggs\nmilk\n"), "looks like text", id="text-renamed-jpg"),
    pytest.param(_write("page.png", b"<!DOCTYPE html><html><body>404</body></html>"), "HTML", id="html-renamed-png"),
    pytest.param(_write("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj"), "PDF", id="pdf-renamed-jpg"),
    pytest.param(_write("bin.jpg", bytes(range(256)) * 4), "not a recognised image", id="binary-junk"),
    pytest.param(_write("phone.jpg", b"\x00\x00\x00\x18ftypheic" + bytes(64)), "HEIC", id="heic-renamed-jpg"),
    pytest.param(_write("half.jpg", _jpeg_bytes()[:4000]), "truncated JPEG", id="truncated-jpeg"),
    pytest.param(_write("head.jpg", _jpeg_bytes()[:12]), "JPEG", id="truncated-jpeg-header"),
    pytest.param(_write("head.png", _png_header_only(64, 64)[:30]), "PNG", id="truncated-png-header"),
    pytest.param(_corrupt_jpeg_body, "JPEG", id="corrupt-jpeg-body"),
    pytest.param(_write("bomb.png", _png_header_only(30000, 30000)), "too large", id="decompression-bomb-png"),
    pytest.param(_directory, "folder", id="directory"),
    pytest.param(_missing, "not found", id="missing-file"),
]


@pytest.mark.parametrize(("make", "reason"), BAD_FILES)
def test_bad_files_raise_clear_reasons(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert reason.lower() in info.value.reason.lower(), info.value.reason
    assert info.value.path == path


@pytest.mark.parametrize(("make", "reason"), BAD_FILES)
def test_bad_files_same_reason_when_decoding_bytes_already_read(tmp_path: Path, make, reason: str) -> None:
    """The encode pipeline hashes and decodes one in-memory copy of the file: failures must read the same."""
    path = make(tmp_path)
    with pytest.raises(ImageLoadError) as from_disk:
        load_image(path)
    with pytest.raises(ImageLoadError) as from_bytes:
        _, data = read_with_digest(path)
        load_image(path, target_size=224, data=data)
    assert from_bytes.value.reason == from_disk.value.reason
    assert from_bytes.value.path == path


def test_corrupt_jpeg_body_does_not_silently_pass_or_crash(tmp_path: Path) -> None:
    """Random bytes in the entropy-coded data either decode to garbage (Pillow tolerates some) or fail clearly."""
    path = _corrupt_jpeg_body(tmp_path)
    try:
        img = load_image(path)
    except ImageLoadError as exc:
        assert "JPEG" in exc.reason
    else:
        assert img.mode == "RGB"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path: Path, photo_factory) -> None:
    path = photo_factory("locked.jpg")
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_permission_error_reason_without_needing_non_root(tmp_path: Path, photo_factory, monkeypatch) -> None:
    """Root can read anything, so simulate the OS refusing the open (the path the real case takes)."""
    import splice_desktop.core.images as images

    path = photo_factory("locked.jpg")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images, "open", refuse, raising=False)
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(path)


def test_pixel_guard_uses_max_pixels(photo_factory) -> None:
    path = photo_factory("big.png", size=(300, 200), fmt="PNG")
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=50_000)
    assert load_image(path, max_pixels=60_000).size == (300, 200)
    assert MAX_PIXELS >= 100_000_000  # camera photos (up to ~100 MP) must pass the default guard


# ------------------------------------------------------------------------------------------ collecting


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_collect_walks_recursively_sorted_hidden_skipped(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    b = _touch(root / "b.JPG")
    a = _touch(root / "a.png")
    _touch(root / "notes.txt")
    _touch(root / ".hidden.jpg")
    _touch(root / ".thumbs" / "t.jpg")
    sub = _touch(root / "sub" / "z.webp")
    sub2 = _touch(root / "sub" / "deeper" / "c.tiff")
    other = _touch(tmp_path / "aaa_first_given_second.gif")

    result = collect_image_files([root, other, a])  # `a` again: duplicates are dropped
    assert result.files == [a, b, sub, sub2, other]
    assert result.skipped == []


def test_collect_reports_explicit_non_images_and_missing(tmp_path: Path) -> None:
    good = _touch(tmp_path / "x.jpeg")
    text = _touch(tmp_path / "readme.txt")
    result = collect_image_files([text, tmp_path / "gone.jpg", good])
    assert result.files == [good]
    reasons = {e.path.name: e.reason for e in result.skipped}
    assert "not an image file type" in reasons["readme.txt"]
    assert "not found" in reasons["gone.jpg"]


def test_image_suffixes_cover_required_formats() -> None:
    for suffix in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"):
        assert suffix in IMAGE_SUFFIXES


# ------------------------------------------------------------------------------------------ digest, thumbnail


def test_file_digest_is_content_sha256(tmp_path: Path, photo_factory) -> None:
    path = photo_factory("d.jpg")
    assert file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(path.read_bytes())
    assert file_digest(copy) == file_digest(path)
    with pytest.raises(ImageLoadError, match="not found"):
        file_digest(tmp_path / "missing.jpg")


def test_read_with_digest_reads_once_or_streams_big_files(tmp_path: Path, photo_factory) -> None:
    path = photo_factory("r.jpg", size=(300, 200))
    content = path.read_bytes()
    digest, data = read_with_digest(path)
    assert digest == hashlib.sha256(content).hexdigest() == file_digest(path) and data == content
    # Above the limit: the same digest from a streamed hash, no bytes kept; decoding then reads the file.
    streamed, none = read_with_digest(path, limit=len(content) - 1)
    assert streamed == digest and none is None
    from_bytes = np.asarray(load_image(path, target_size=64, data=data))
    np.testing.assert_array_equal(from_bytes, np.asarray(load_image(path, target_size=64)))
    with pytest.raises(ImageLoadError, match="not found"):
        read_with_digest(tmp_path / "missing.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="folder"):
        read_with_digest(tmp_path / "dir.jpg")


def test_make_thumbnail(photo_factory) -> None:
    thumb = make_thumbnail(photo_factory("t.jpg", size=(1600, 1200)), size=128)
    assert thumb.mode == "RGB" and thumb.size == (128, 96)
