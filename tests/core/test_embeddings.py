"""The threaded encode pipeline gives the same embeddings as a direct preprocess + encode, and the cache persists them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splice_desktop.core.embeddings import (
    TALL_RATIO,
    EncodeReport,
    ImageEmbeddingCache,
    ImagePreprocessor,
    encode_images,
    prepare_image,
)
from splice_desktop.core.progress import CancelToken

# The pipeline resizes on uint8 with torch's port of Pillow's bicubic filter; a few pixels may differ from the
# stock transform by 1-2 8-bit levels (tested below), which moves a tiny-model unit embedding by < 1e-4 per component.
EMBED_ATOL = 2e-4


def _direct(loaded, paths) -> np.ndarray:
    """open_clip's own preprocess (Pillow resize, float ToTensor + Normalize) and one forward: the reference."""
    import torch

    batch = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in paths])
    return loaded.encode_image_tensor(batch)


def _direct_fast(loaded, paths) -> np.ndarray:
    """Same decode as the reference through the pipeline's ImagePreprocessor: must match the pipeline exactly."""
    pre = ImagePreprocessor(loaded.preprocess)
    batch = pre.batch([pre.pixels(Image.open(p).convert("RGB")) for p in paths])
    return loaded.encode_image_tensor(batch)


@pytest.fixture
def photos(photo_factory):
    """Seven small photo-like images (too small for draft mode to change anything)."""
    return [photo_factory(f"p{i}.jpg", size=(96 + 8 * i, 72), seed=i) for i in range(6)] + [
        photo_factory("p6.png", size=(80, 80), seed=6, fmt="PNG")
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_matches_direct_preprocess_and_encode(tiny_model, photos, workers: int) -> None:
    rep = encode_images(tiny_model, photos, batch_size=3, workers=workers)
    assert not rep.cancelled and rep.failures == []
    assert [r.path for r in rep.results] == photos
    got = np.stack([r.embedding for r in rep.results])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _direct_fast(tiny_model, photos), atol=1e-5)  # batching/order/threads exact
    direct = _direct(tiny_model, photos)  # open_clip's own preprocess
    np.testing.assert_allclose(got, direct, atol=EMBED_ATOL)
    assert float(np.min(np.sum(got * direct, axis=1))) > 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_large_jpeg_in_draft_mode_stays_close(tiny_model, photo_factory) -> None:
    from splice_desktop.core.images import load_image

    path = photo_factory("camera.jpg", size=(1600, 1200), seed=3)
    other = photo_factory("other.jpg", size=(1600, 1200), seed=2)
    assert load_image(path, target_size=tiny_model.image_size).size[0] < 1600  # draft mode really kicks in
    rep = encode_images(tiny_model, [path, other], batch_size=2)
    got = rep.results[0].embedding
    want, want_other = _direct(tiny_model, [path, other])
    # Random tiny-model embeddings of different photos can already be ~0.99 apart, so demand much closer,
    # and closer than the pipeline's embedding is to a different photo.
    assert float(got @ want) > 0.9995
    assert float(got @ want) > float(got @ want_other)


def test_failures_are_listed_and_batch_continues(tiny_model, photos, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a picture")
    missing = tmp_path / "missing.jpg"
    paths = [photos[0], empty, photos[1], text, missing, photos[2]]
    streamed: list[tuple[int, int]] = []
    rep = encode_images(tiny_model, paths, batch_size=2, on_batch=lambda r, f: streamed.append((len(r), len(f))))
    assert [r.path for r in rep.results] == [photos[0], photos[1], photos[2]]
    assert [f.path for f in rep.failures] == [empty, text, missing]
    assert "empty" in rep.failures[0].reason and "text" in rep.failures[1].reason
    assert sum(r for r, _ in streamed) == 3 and sum(f for _, f in streamed) == 3
    np.testing.assert_allclose(
        np.stack([r.embedding for r in rep.results]), _direct_fast(tiny_model, photos[:3]), atol=1e-5
    )


# ------------------------------------------------------------------------------- uint8 preprocessing


def _noisy_image(w: int, h: int, seed: int) -> Image.Image:
    """Stripes + noise: sharp detail is where two resize implementations would disagree most."""
    rng = np.random.default_rng(seed)
    xx = np.arange(w)[None, :, None]
    arr = 128 + 100 * np.sin(xx / 3.7 + seed) * np.array([1.0, 0.5, -1.0]) + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# Landscape, portrait, exact fit, near-1 scale, upscaling, and tall images (>= 1.9:1, e.g. phone screenshots,
# which Pillow >= 13 resamples vertically first and which therefore take Pillow's own resize).
SHAPES = [(1152, 864), (864, 1152), (576, 432), (500, 375), (301, 227), (224, 224), (225, 300), (3000, 224),
          (1500, 400), (2000, 300), (600, 1000), (374, 1071), (540, 1170), (400, 801), (224, 2000), (100, 60),
          (40, 30), (7, 3), (1, 1)]


@pytest.mark.parametrize("image_size", [224, 64])
def test_uint8_preprocess_matches_open_clip_preprocess(image_size: int) -> None:
    """Tolerance, in 8-bit levels of the resized image: at most 2 on any value, under 2% of values differ at all.

    The only difference from the stock transform is where the two separable resize passes round to 8 bits
    (Pillow's 22-bit vs torch's fixed-point weights); a 1-level difference after the first pass can reach 2
    after the second near scale 1 or when upscaling. Normalisation uses the stock operations in the same order.
    """
    import open_clip

    stock = open_clip.image_transform(image_size, is_train=False)
    pre = ImagePreprocessor(stock)
    assert pre.plan is not None  # the fast path really is used for open_clip's default transform
    std = np.asarray(pre.plan.std, np.float32).reshape(3, 1, 1)
    for seed, (w, h) in enumerate(SHAPES):
        img = _noisy_image(w, h, seed)
        want, got = stock(img).numpy(), pre.tensor(img).numpy()
        assert got.shape == want.shape == (3, image_size, image_size) and got.dtype == np.float32
        levels = np.abs(got - want) * std * 255.0
        assert levels.max() <= 2.0 + 1e-3, ((w, h), levels.max())
        assert (levels > 0.5).mean() < 0.02, ((w, h), (levels > 0.5).mean())
        if h > TALL_RATIO * w:  # tall images take Pillow's own resize: identical values
            assert levels.max() == 0.0, ((w, h), levels.max())


def test_unusual_transforms_run_unchanged() -> None:
    """A transform that is not open_clip's default (here: squash resize) is applied as is, not approximated."""
    import open_clip

    squash = open_clip.image_transform(64, is_train=False, resize_mode="squash")
    pre = ImagePreprocessor(squash)
    assert pre.plan is None
    img = _noisy_image(120, 80, 0)
    np.testing.assert_array_equal(pre.tensor(img).numpy(), squash(img).numpy())
    assert pre.batch([pre.pixels(img)] * 2).shape == (2, 3, 64, 64)


def test_torch_without_uint8_resize_falls_back_to_the_stock_transform(monkeypatch) -> None:
    import open_clip

    import splice_desktop.core.embeddings as emb

    monkeypatch.setattr(emb, "_uint8_resize_supported", lambda: False)
    stock = open_clip.image_transform(64, is_train=False)
    pre = ImagePreprocessor(stock)
    img = _noisy_image(120, 80, 2)
    assert pre.plan is None
    np.testing.assert_array_equal(pre.tensor(img).numpy(), stock(img).numpy())


def test_non_rgb_input_is_converted_like_the_stock_transform() -> None:
    import open_clip

    stock = open_clip.image_transform(64, is_train=False)
    grey = _noisy_image(90, 70, 1).convert("L")
    got = ImagePreprocessor(stock).tensor(grey).numpy()
    np.testing.assert_allclose(got, stock(grey).numpy(), atol=2.5 / 255 / 0.26)


def test_batch_normalises_uint8_in_float32() -> None:
    import open_clip

    pre = ImagePreprocessor(open_clip.image_transform(64, is_train=False))
    pixels = [pre.pixels(_noisy_image(90, 70, s)) for s in range(3)]
    assert all(p.dtype.is_floating_point is False and tuple(p.shape) == (3, 64, 64) for p in pixels)
    batch = pre.batch(pixels)
    assert batch.dtype.is_floating_point and str(batch.dtype) == "torch.float32" and batch.is_contiguous()
    mean = np.asarray(pre.plan.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(pre.plan.std, np.float32).reshape(3, 1, 1)
    np.testing.assert_allclose(batch[1].numpy(), (pixels[1].numpy() / 255.0 - mean) / std, atol=1e-5)


def test_prepare_image_reads_the_file_once(tiny_model, photos, monkeypatch) -> None:
    """The bytes hashed for the cache key are the bytes decoded: one open per file, digest = content sha256."""
    import hashlib

    import splice_desktop.core.images as images

    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(images, "open", counting_open, raising=False)
    pre = ImagePreprocessor(tiny_model.preprocess)
    prepared = prepare_image(tiny_model, photos[0], preprocessor=pre, per_batch=True)
    assert prepared.error is None and opened == [str(photos[0])]
    assert prepared.digest == hashlib.sha256(photos[0].read_bytes()).hexdigest()
    assert str(prepared.tensor.dtype) == "torch.uint8"
    assert tuple(prepared.tensor.shape) == (3, tiny_model.image_size, tiny_model.image_size)
    np.testing.assert_allclose(
        tiny_model.encode_image_tensor(pre.batch([prepared.tensor])), _direct_fast(tiny_model, photos[:1]), atol=1e-6
    )
    # Without per_batch (the default): still one read, and exactly the model's own transform.
    opened.clear()
    exact = prepare_image(tiny_model, photos[1])
    assert opened == [str(photos[1])] and exact.tensor.dtype.is_floating_point
    np.testing.assert_array_equal(exact.tensor.numpy(), tiny_model.preprocess(Image.open(photos[1]).convert("RGB")).numpy())


def test_prepare_image_turns_bad_files_into_named_errors(tiny_model, tmp_path: Path) -> None:
    cases = {
        "empty.jpg": (b"", "file is empty"),
        "notes.jpg": (b"shopping list\neggs\n", "looks like text"),
        "head.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        prepared = prepare_image(tiny_model, tmp_path / name)
        assert prepared.tensor is None and prepared.error is not None
        assert reason.lower() in prepared.error.reason.lower(), prepared.error.reason
    missing = prepare_image(tiny_model, tmp_path / "missing.jpg")
    assert missing.error is not None and "not found" in missing.error.reason


def test_cache_hits_skip_decoding(tiny_model, photos, tmp_path: Path, monkeypatch) -> None:
    import splice_desktop.core.embeddings as emb

    first = encode_images(tiny_model, photos, batch_size=4, cache=ImageEmbeddingCache(tiny_model.key, tmp_path))
    assert first.cache_hits == 0 and len(first.results) == len(photos)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cache hit must not decode the image")

    monkeypatch.setattr(emb, "load_image", no_decoding)
    reopened = ImageEmbeddingCache(tiny_model.key, tmp_path)  # fresh instance: reads what was flushed to disk
    second = encode_images(tiny_model, photos, batch_size=4, cache=reopened)
    assert second.cache_hits == len(photos) and second.failures == []
    np.testing.assert_array_equal(
        np.stack([r.embedding for r in second.results]), np.stack([r.embedding for r in first.results])
    )


def test_cache_is_keyed_by_content_not_name(tiny_model, photos, tmp_path: Path) -> None:
    cache = ImageEmbeddingCache(tiny_model.key, tmp_path / "cache")
    encode_images(tiny_model, photos[:1], cache=cache)
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(photos[0].read_bytes())
    rep = encode_images(tiny_model, [renamed], cache=cache)
    assert rep.cache_hits == 1


def test_cancel_midway_returns_partial_report(tiny_model, photos) -> None:
    token = CancelToken()
    batches: list[int] = []

    def on_batch(results, failures) -> None:
        batches.append(len(results))
        token.cancel()

    rep = encode_images(tiny_model, photos, batch_size=2, cancel=token, on_batch=on_batch)
    assert isinstance(rep, EncodeReport) and rep.cancelled
    assert batches == [2] and [r.path for r in rep.results] == photos[:2]


def test_progress_reaches_total(tiny_model, photos) -> None:
    calls: list[tuple[int, int]] = []
    encode_images(tiny_model, photos, batch_size=3, progress=lambda d, t, m: calls.append((d, t)))
    assert calls[0] == (0, len(photos)) and calls[-1] == (len(photos), len(photos))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_empty_input(tiny_model) -> None:
    rep = encode_images(tiny_model, [])
    assert rep.results == [] and rep.failures == [] and not rep.cancelled


# ------------------------------------------------------------------------------------------ cache unit tests


def _unit(rng, n: int, d: int = 8) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_cache_put_get_flush_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 5)
    cache = ImageEmbeddingCache("m", tmp_path)
    cache.put_many([f"d{i}" for i in range(3)], vecs[:3])
    cache.put("d3", vecs[3])
    np.testing.assert_array_equal(cache.get("d1"), vecs[1])
    assert cache.get("nope") is None and len(cache) == 4
    assert ImageEmbeddingCache("m", tmp_path).get("d1") is None  # not flushed yet
    cache.flush()
    cache.put("d4", vecs[4])
    cache.flush()
    again = ImageEmbeddingCache("m", tmp_path)
    assert len(again) == 5
    for i in range(5):
        np.testing.assert_array_equal(again.get(f"d{i}"), vecs[i])
    assert again.get("d0").dtype == np.float32
    # One generation file on disk, and the index names it.
    files = sorted(p.name for p in tmp_path.glob("vectors-*.npy"))
    assert files == [json.loads((tmp_path / "index.json").read_text())["vectors"]]


def test_cache_auto_flushes_when_pending_is_full(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cache = ImageEmbeddingCache("m", tmp_path, max_pending=4)
    cache.put_many([f"d{i}" for i in range(4)], _unit(rng, 4))
    assert ImageEmbeddingCache("m", tmp_path).get("d2") is not None


def test_cache_rejects_wrong_dimension(tmp_path: Path) -> None:
    cache = ImageEmbeddingCache("m", tmp_path)
    cache.put("a", np.ones(8, np.float32))
    with pytest.raises(ValueError, match="does not match"):
        cache.put("b", np.ones(4, np.float32))


def test_corrupt_index_means_empty_cache(tmp_path: Path) -> None:
    cache = ImageEmbeddingCache("m", tmp_path)
    cache.put("a", np.ones(8, np.float32))
    cache.flush()
    (tmp_path / "index.json").write_text("{ not json")
    fresh = ImageEmbeddingCache("m", tmp_path)
    assert fresh.get("a") is None and len(fresh) == 0
    fresh.put("b", np.ones(8, np.float32))
    fresh.flush()
    assert ImageEmbeddingCache("m", tmp_path).get("b") is not None


def test_decode_threads_leave_model_thread_count_alone(tiny_model, photos) -> None:
    import torch

    before = torch.get_num_threads()
    encode_images(tiny_model, photos, batch_size=4, workers=2)
    assert torch.get_num_threads() == before


def test_two_cache_objects_on_one_folder_never_mix_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 4)
    a, b = ImageEmbeddingCache("m", tmp_path), ImageEmbeddingCache("m", tmp_path)
    a.put_many(["a0", "a1"], vecs[:2])
    b.put_many(["b0", "b1"], vecs[2:])
    a.flush()
    b.flush()  # last writer wins the index; a's rows may be lost, but never paired with b's vectors
    fresh = ImageEmbeddingCache("m", tmp_path)
    expected = dict(zip(["a0", "a1", "b0", "b1"], vecs))
    found = [d for d in expected if fresh.get(d) is not None]
    assert {"b0", "b1"} <= set(found)
    for d in found:
        np.testing.assert_array_equal(fresh.get(d), expected[d])
    np.testing.assert_array_equal(a.get("a1"), vecs[1])  # the first object still serves its own rows


def test_shared_cache_object_keeps_every_writers_rows(tmp_path: Path, monkeypatch) -> None:
    """The GUI encoder and the pool index both write one model's cache: through ``shared`` no row is lost."""
    monkeypatch.setenv("SPLICE_DESKTOP_CACHE", str(tmp_path))
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 4)
    encoder_side = ImageEmbeddingCache.shared("model-x")
    pool_side = ImageEmbeddingCache.shared("model-x")
    assert encoder_side is pool_side
    assert ImageEmbeddingCache.shared("model-y") is not encoder_side
    encoder_side.put_many(["a0", "a1"], vecs[:2])
    encoder_side.flush()
    pool_side.put_many(["b0", "b1"], vecs[2:])
    pool_side.flush()
    fresh = ImageEmbeddingCache("model-x", encoder_side.folder)
    for d, v in zip(["a0", "a1", "b0", "b1"], vecs):
        np.testing.assert_array_equal(fresh.get(d), v)
