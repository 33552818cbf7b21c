"""Workers: task threads report exactly one outcome, cancel cooperatively, and the pipeline reuses what is unchanged."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from splice_desktop.core.errors import CancelledError
from splice_desktop.gui import workers
from splice_desktop.gui.widgets.image_list import EmbeddingStore


def test_task_thread_success_progress_and_partials(qtbot):
    seen_progress, seen_partial = [], []

    def fn(ctx):
        for i in range(3):
            ctx.progress(i + 1, 3, f"step {i + 1}")
            ctx.partial(i * 10)
        return "done"

    t = workers.TaskThread(fn, "ok")
    t.progress.connect(lambda d, n, m: seen_progress.append((d, n, m)))
    t.partial.connect(seen_partial.append)
    with qtbot.waitSignal(t.succeeded, timeout=5000) as blocker:
        t.start()
    t.wait(2000)
    assert blocker.args == ["done"]
    qtbot.waitUntil(lambda: len(seen_partial) == 3)
    assert seen_partial == [0, 10, 20]
    assert seen_progress[-1] == (3, 3, "step 3")


def test_task_thread_failure_is_reported_not_raised(qtbot):
    def fn(ctx):
        raise ValueError("bad input file")

    t = workers.TaskThread(fn, "fail")
    with qtbot.waitSignal(t.failed, timeout=5000) as blocker:
        t.start()
    t.wait(2000)
    assert isinstance(blocker.args[0], ValueError)
    assert "bad input file" in str(blocker.args[0])


def test_task_thread_cancel_is_cooperative(qtbot):
    entered = threading.Event()
    loops = []

    def fn(ctx):
        entered.set()
        while True:
            loops.append(1)
            ctx.check()
            time.sleep(0.01)

    t = workers.TaskThread(fn, "cancel")
    with qtbot.waitSignal(t.cancelled, timeout=5000):
        t.start()
        assert entered.wait(5)
        t.cancel()
    assert t.wait(2000)
    assert loops, "the task ran before being cancelled"
    assert not t.isRunning()
    assert t not in workers.running_threads()


def test_stop_threads_waits_for_all(qtbot):
    def fn(ctx):
        while not ctx.cancel.cancelled:
            time.sleep(0.005)
        raise CancelledError()

    threads = [workers.start_task(fn, f"t{i}") for i in range(3)]
    qtbot.waitUntil(lambda: all(t.isRunning() for t in threads))
    stuck = workers.stop_threads(threads, 3000)
    assert stuck == []
    assert not any(t.isRunning() for t in threads)


def test_embedding_store_grows_compactly_and_keeps_rows():
    store = EmbeddingStore()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(100, 8)).astype(np.float32)
    for i, v in enumerate(vecs):
        store.put(f"img{i}", v)
    assert len(store) == 100
    assert store.matrix().dtype == np.float32
    assert store.matrix().shape == (100, 8)
    np.testing.assert_array_equal(store.get("img37"), vecs[37])
    store.put("img37", vecs[0])  # overwrite keeps one row
    assert len(store) == 100
    np.testing.assert_array_equal(store.get("img37"), vecs[0])
    assert store.nbytes() <= 2 * 100 * 8 * 4 + 16 * 8 * 4  # doubling growth, no per-item objects
    with pytest.raises(ValueError):
        store.put("bad", np.zeros(5, dtype=np.float32))


def test_embedding_store_put_many_appends_a_batch_like_put():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(40, 8)).astype(np.float32)
    one, many = EmbeddingStore(), EmbeddingStore()
    for i, v in enumerate(vecs):
        one.put(f"img{i}", v)
    for start in range(0, 40, 16):  # first batch sets the dimension, later ones append (and grow) in one copy
        many.put_many([f"img{i}" for i in range(start, min(start + 16, 40))], vecs[start:start + 16])
    assert many.keys() == one.keys()
    np.testing.assert_array_equal(many.matrix(), one.matrix())
    many.put_many(["img3", "new"], vecs[:2])  # an overwrite in the batch falls back to the checked path
    np.testing.assert_array_equal(many.get("img3"), vecs[0])
    assert len(many) == 41
    with pytest.raises(ValueError):
        many.put_many(["a", "b"], vecs[:3])
    with pytest.raises(ValueError):
        many.put_many(["x"], np.zeros((1, 5), dtype=np.float32))


def _loader(cfg, previous=None, emb=None):
    """An unstarted loader thread: connect first, then start (a signal emitted before connecting is lost)."""
    return workers.TaskThread(lambda ctx: workers.load_pipeline(ctx, cfg, previous, emb), "pipeline-loader")


def _run_pipeline(qtbot, cfg, previous=None, emb=None):
    stages = []
    t = _loader(cfg, previous, emb)
    t.partial.connect(lambda st: stages.append(st.stage))
    failures = []
    t.failed.connect(failures.append)
    with qtbot.waitSignal(t.succeeded, timeout=120000) as blocker:
        t.start()
    t.wait(5000)
    assert not failures
    return blocker.args[0], stages


def test_pipeline_loads_tiny_model_and_reuses_unchanged_parts(qtbot, tiny_config):
    state, stages = _run_pipeline(qtbot, tiny_config)
    assert stages[:3] == ["model", "concepts", "mean"]
    assert state.meaningless
    assert state.bank.matrix.shape == (len(state.vocabulary), state.loaded.embed_dim)
    assert state.image_mean is not None and not state.image_mean.present
    assert state.decomposer is not None and state.zeroshot is not None

    # Only the vocabulary size changes: the model object and zero-shot head are reused, the bank is rebuilt.
    smaller = tiny_config.with_changes(vocab_size=100)
    state2, _ = _run_pipeline(qtbot, smaller, previous=state)
    assert state2.loaded is state.loaded
    assert state2.zeroshot is state.zeroshot
    assert len(state2.vocabulary) == 100
    assert state2.bank.matrix.shape[0] == 100
    assert state2.decomposer is not state.decomposer and state2.decomposer.bank is state2.bank

    # Applying the same settings again keeps the decomposer (its prepared matrix and cached paths) as well.
    again, _ = _run_pipeline(qtbot, smaller, previous=state2)
    assert again.bank is state2.bank and again.decomposer is state2.decomposer

    # "Compute the mean from loaded images" uses the given embeddings.
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(20, state.loaded.embed_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    state3, _ = _run_pipeline(qtbot, smaller.with_changes(mean_from_images=True), previous=state2, emb=emb)
    assert state3.bank is state2.bank
    assert state3.image_mean.present
    assert state3.decomposer is not state2.decomposer and state3.decomposer.image_mean is state3.image_mean
    expected = emb.mean(axis=0)
    got = np.asarray(state3.image_mean.vector, dtype=np.float32)
    cos = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
    assert cos > 0.999


def test_pipeline_missing_checkpoint_fails_with_weights_error(qtbot, tiny_config):
    from splice_desktop.core.errors import WeightsUnavailableError

    cfg = tiny_config.with_changes(model_name="ViT-B-32", pretrained=None, checkpoint="/nonexistent/model.safetensors")
    t = _loader(cfg)
    with qtbot.waitSignal(t.failed, timeout=60000) as blocker:
        t.start()
    t.wait(5000)
    assert isinstance(blocker.args[0], WeightsUnavailableError)
    assert "model.safetensors" in str(blocker.args[0])


def test_pipeline_cancel_during_concept_bank(qtbot, tiny_config, tmp_path):
    """A big vocabulary keeps the bank builder busy; cancel stops it and nothing is reported as loaded."""
    from tests.gui.conftest import make_words

    vocab = tmp_path / "big.txt"
    vocab.write_text("\n".join(make_words(6000, seed=3)) + "\n", encoding="utf-8")
    cfg = tiny_config.with_changes(vocab_path=str(vocab))
    t = _loader(cfg)
    succeeded = []
    t.succeeded.connect(succeeded.append)
    with qtbot.waitSignal(t.partial, timeout=60000):  # the model stage is done; the bank is being encoded
        t.start()
    with qtbot.waitSignal(t.cancelled, timeout=60000):
        t.cancel()
    assert t.wait(5000)
    assert succeeded == []


def test_thumbnail_worker_makes_small_images_off_thread(qtbot, photo_factory):
    paths = [str(photo_factory(f"p{i}.jpg", size=(640, 480), seed=i)) for i in range(3)]
    bad = photo_factory("x.jpg").parent / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    w = workers.ThumbnailWorker(size=64)
    got, failed = {}, {}
    w.ready.connect(lambda p, img: got.__setitem__(p, img))
    w.failed.connect(lambda p, r: failed.__setitem__(p, r))
    w.start()
    try:
        for p in paths + [str(bad)]:
            w.request(p)
            w.request(p)  # duplicates are coalesced
        qtbot.waitUntil(lambda: len(got) == 3 and len(failed) == 1, timeout=20000)
    finally:
        assert w.stop()
    for img in got.values():
        assert max(img.width(), img.height()) <= 64
        assert not img.isNull()
    assert str(bad) in failed


def test_thread_guard_records_every_started_qthread(qtbot, _no_dangling_qthreads):
    """The autouse guard sees threads started anywhere (it wraps QThread.start), so a leak cannot hide."""
    from PySide6.QtCore import QThread

    plain = QThread()
    plain.start()
    task = workers.start_task(lambda ctx: 1, "guarded")
    try:
        assert plain in _no_dangling_qthreads
        assert task in _no_dangling_qthreads
        assert "test_workers.py" in _no_dangling_qthreads[plain]  # where it was started, for the failure message
    finally:
        plain.quit()
        assert plain.wait(3000)
        assert task.wait(3000)


def test_gui_model_names_match_core_and_tiny_config_loads_the_demo_model():
    """gui.settings keeps its own copies of core.models' names (it must stay cheap to import): they must agree."""
    from splice_desktop.core import models
    from splice_desktop.gui import settings
    from splice_desktop.gui.workers import spec_for

    assert (settings.DEFAULT_MODEL, settings.DEFAULT_PRETRAINED, settings.TINY_MODEL) == (
        models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED, models.TINY_MODEL)
    cfg = settings.PipelineConfig(checkpoint="/some/file.safetensors").with_tiny_model()
    assert cfg.checkpoint is None and cfg.pretrained is None and spec_for(cfg).is_tiny
