"""PoolIndex: exact records, incremental updates (add, change, remove), cancel, and sharing with the SpLiCE cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splice_desktop.core.interpret.heads import HeadDecomposer  # noqa: E402
from splice_desktop.core.interpret.pool import PoolIndex  # noqa: E402
from splice_desktop.core.progress import CancelToken  # noqa: E402

pytest.importorskip("splice_desktop.core.images")


def _direct_parts(tiny_model, path, layer, head):
    """One image through the app's preprocessing and the head decomposition, outside the pool."""
    from splice_desktop.core.embeddings import ImagePreprocessor
    from splice_desktop.core.images import load_image

    x = ImagePreprocessor(tiny_model.preprocess).tensor(load_image(path, target_size=tiny_model.image_size))[None]
    return HeadDecomposer(tiny_model).run(x).head_sums([layer])[0, 0, head]


def test_incremental_add_change_remove(tiny_model, photo_factory, tmp_path) -> None:
    folder = tmp_path / "pool"
    for i in range(5):
        photo_factory(f"pool/img{i}.jpg", seed=i)
    pool = PoolIndex(tiny_model, [folder])
    assert pool.layers == (0, 1)  # tiny model has 2 layers: "last four" = both
    rep = pool.update(batch_size=2)
    assert (rep.added, rep.reused, rep.removed) == (5, 0, 0) and not rep.cancelled
    assert len(pool) == 5
    # rows are exact: same as decomposing the file directly
    k = [p.name for p in pool.paths].index("img3.jpg")
    np.testing.assert_allclose(pool.head_matrix(1, 2)[k], _direct_parts(tiny_model, pool.paths[k], 1, 2), atol=1e-5)

    # nothing changed: nothing encoded
    rep = pool.update()
    assert (rep.added, rep.changed, rep.reused, rep.removed) == (0, 0, 5, 0)

    # add one, change one (new content, new mtime), remove one
    photo_factory("pool/sub/new.jpg", seed=10)
    changed = folder / "img1.jpg"
    before = pool.head_matrix(0, 0)[[p.name for p in pool.paths].index("img1.jpg")].copy()
    photo_factory("pool/img1.jpg", seed=11)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (folder / "img4.jpg").unlink()
    reopened = PoolIndex(tiny_model, [folder])  # state comes back from disk (memory-mapped)
    assert len(reopened) == 5
    rep = reopened.update()
    assert (rep.added, rep.changed, rep.reused, rep.removed) == (1, 1, 3, 1)
    names = sorted(p.name for p in reopened.paths)
    assert names == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "new.jpg"]
    k1 = [p.name for p in reopened.paths].index("img1.jpg")
    after = reopened.head_matrix(0, 0)[k1]
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, _direct_parts(tiny_model, changed, 0, 0), atol=1e-5)
    assert isinstance(np.load(reopened.dir / "u.npy", mmap_mode="r"), np.memmap)


def test_bad_file_is_reported_and_skipped(tiny_model, photo_factory, tmp_path) -> None:
    photo_factory("p/a.jpg", seed=1)
    (tmp_path / "p" / "broken.jpg").write_bytes(b"not an image at all")
    pool = PoolIndex(tiny_model, [tmp_path / "p"])
    rep = pool.update()
    assert len(pool) == 1 and len(rep.failures) == 1 and "broken.jpg" in str(rep.failures[0])


def test_cancel_keeps_finished_batches_and_resumes(tiny_model, photo_factory, tmp_path) -> None:
    for i in range(6):
        photo_factory(f"c/img{i}.png", seed=i, fmt="PNG")
    token = CancelToken()
    seen = []

    def progress(done, total, message):
        seen.append((done, total))
        if message.startswith("Indexing") and done >= 2:
            token.cancel()

    pool = PoolIndex(tiny_model, [tmp_path / "c"])
    rep = pool.update(progress=progress, cancel=token, batch_size=2)
    assert rep.cancelled and 0 < len(pool) < 6
    rep2 = PoolIndex(tiny_model, [tmp_path / "c"]).update()
    assert not rep2.cancelled and rep2.reused == len(pool) and rep2.added == 6 - len(pool)


def test_embeddings_shared_with_splice_cache(tiny_model, photo_factory, tmp_path) -> None:
    from splice_desktop.core.embeddings import ImageEmbeddingCache
    from splice_desktop.core.images import file_digest

    path = photo_factory("s/one.jpg", seed=3)
    pool = PoolIndex(tiny_model, [tmp_path / "s"])
    pool.update()
    cached = ImageEmbeddingCache(tiny_model.key).get(file_digest(path))
    assert cached is not None
    np.testing.assert_allclose(cached, pool.embeddings[0], atol=1e-6)
    assert abs(float(np.linalg.norm(pool.embeddings[0])) - 1) < 1e-5
    # The pool and SpLiCE encoding preprocess alike, so whichever writes the shared cache first, both agree.
    from splice_desktop.core.embeddings import encode_images

    direct = encode_images(tiny_model, [path], cache=None).results[0].embedding
    np.testing.assert_allclose(direct, pool.embeddings[0], atol=1e-5)
