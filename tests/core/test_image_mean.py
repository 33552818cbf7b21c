"""Image mean: the authors' .pt files, .npy, computing from embeddings, and dimension checks."""

from __future__ import annotations

import numpy as np
import pytest

from splice_desktop.core.errors import ImageMeanError
from splice_desktop.core.image_mean import (
    ImageMean,
    ImageMeanAccumulator,
    compute_image_mean,
    load_image_mean,
    save_image_mean,
)


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32) + 0.5
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_compute_is_mean_of_unit_rows_not_renormalised():
    rows = _unit_rows(50, 16)
    scaled = rows * np.arange(1, 51, dtype=np.float32)[:, None]  # non-unit input is normalised first
    mean = compute_image_mean(scaled)
    np.testing.assert_allclose(mean.vector, rows.mean(axis=0), atol=1e-6)
    assert mean.vector.dtype == np.float32 and mean.count == 50
    assert 0 < mean.norm < 1  # a mean of unit vectors, not renormalised
    assert mean.present and mean.dim == 16 and "50 images" in mean.source


def test_accumulator_matches_one_shot():
    rows = _unit_rows(37, 8, seed=3)
    batched = compute_image_mean([rows[:10], rows[10:11], rows[11:]])
    acc = ImageMeanAccumulator()
    acc.add(rows[0])
    acc.add(rows[1:])
    np.testing.assert_allclose(batched.vector, compute_image_mean(rows).vector, atol=1e-7)
    np.testing.assert_allclose(acc.result().vector, batched.vector, atol=1e-7)
    with pytest.raises(ImageMeanError, match="dimension"):
        acc.add(_unit_rows(2, 9))


def test_compute_rejects_empty_and_zero():
    with pytest.raises(ImageMeanError, match="No image embeddings"):
        compute_image_mean(np.zeros((0, 4), np.float32))
    with pytest.raises(ImageMeanError, match="zero"):
        compute_image_mean(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_save_load_round_trip(tmp_path, suffix):
    mean = compute_image_mean(_unit_rows(20, 12))
    path = save_image_mean(mean, tmp_path / f"mean{suffix}")
    loaded = load_image_mean(path, expected_dim=12)
    np.testing.assert_array_equal(loaded.vector, mean.vector)
    assert loaded.source == str(path)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_wrong_dimension_says_expected_and_got(tmp_path):
    path = save_image_mean(compute_image_mean(_unit_rows(5, 12)), tmp_path / "m.npy")
    with pytest.raises(ImageMeanError, match=r"dimension 12.*dimension 32"):
        load_image_mean(path, expected_dim=32)


def test_loads_torch_variants_without_pickled_code(tmp_path):
    import torch

    vec = torch.linspace(-0.1, 0.1, 10)
    torch.save(vec[None, :].clone(), tmp_path / "row.pt")
    torch.save({"mean": vec.clone()}, tmp_path / "dict.pt")
    for name in ("row.pt", "dict.pt"):
        np.testing.assert_allclose(load_image_mean(tmp_path / name).vector, vec.numpy())

    class Evil:  # an object that needs pickled code must be refused
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ImageMeanError, match="refused|Could not read"):
        load_image_mean(tmp_path / "evil.pt")


def test_bad_files(tmp_path):
    with pytest.raises(ImageMeanError, match="not found"):
        load_image_mean(tmp_path / "missing.npy")
    (tmp_path / "junk.txt").write_text("hello")
    with pytest.raises(ImageMeanError, match="neither"):
        load_image_mean(tmp_path / "junk.txt")
    np.save(tmp_path / "mat.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ImageMeanError, match="shape"):
        load_image_mean(tmp_path / "mat.npy")
    np.save(tmp_path / "nan.npy", np.array([np.nan, 1.0], np.float32))
    with pytest.raises(ImageMeanError, match="NaN"):
        load_image_mean(tmp_path / "nan.npy")
    with pytest.raises(ImageMeanError, match="no image mean"):
        save_image_mean(ImageMean.absent(), tmp_path / "x.npy")


def test_absent():
    absent = ImageMean.absent()
    assert not absent.present and absent.vector is None and absent.dim is None
    assert "none" in absent.source
    absent.check_dim(512)  # absent fits any model


def test_authors_pt_means(ref_dir):
    means = ref_dir / "splice" / "means"
    if not means.is_dir():
        pytest.skip("reference means not present")
    expected = {  # dimension and norm from the reference report, section 5
        "open_clip_ViT-B-32_image.pt": (512, 0.5601),
        "clip_ViT-B-32_image.pt": (512, 0.6842),
        "clip_ViT-B-16_image.pt": (512, 0.7016),
        "clip_RN50_image.pt": (1024, 0.6218),
    }
    for name, (dim, norm) in expected.items():
        mean = load_image_mean(means / name, expected_dim=dim)
        assert mean.dim == dim and mean.vector.dtype == np.float32
        assert mean.norm == pytest.approx(norm, abs=1e-4)
        assert not mean.notes
    with pytest.raises(ImageMeanError, match="1024"):
        load_image_mean(means / "clip_RN50_image.pt", expected_dim=512)


def test_compute_from_folder_skips_bad_files(tiny_model, photo_factory, tmp_path):
    from splice_desktop.core.embeddings import encode_images
    from splice_desktop.core.image_mean import compute_image_mean_from_files

    good = [photo_factory(f"sub/img{i}.jpg", seed=i) for i in range(5)]
    (tmp_path / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    mean, skipped = compute_image_mean_from_files(tiny_model, [tmp_path / "sub"], batch_size=2, use_cache=False)
    assert mean.count == 5 and [e.path.name for e in skipped] == ["broken.jpg"]
    direct = encode_images(tiny_model, sorted(good))
    np.testing.assert_allclose(
        mean.vector, compute_image_mean(np.stack([r.embedding for r in direct.results])).vector, atol=1e-6
    )
    mean.check_dim(tiny_model.embed_dim)
    assert "5 images" in mean.source


def test_compute_from_folder_errors(tiny_model, photo_factory, tmp_path):
    from splice_desktop.core.errors import CancelledError
    from splice_desktop.core.image_mean import compute_image_mean_from_files
    from splice_desktop.core.progress import CancelToken

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageMeanError, match="No readable images"):
        compute_image_mean_from_files(tiny_model, [empty])
    photo_factory("one.jpg")
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        compute_image_mean_from_files(tiny_model, [tmp_path], cancel=token, use_cache=False)
