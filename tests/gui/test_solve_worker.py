"""The latest-request-wins solve worker, driven with the real core (tiny model, small random vocabulary).

Also holds the shared fixtures of the analysis-view tests (imported by the other test_* files of gui_analysis).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from splice_desktop.core.decompose import Decomposer, EditState

pytest.importorskip("pytestqt")


# ---------------------------------------------------------------------------------------------- fixtures


def random_words(n: int, seed: int = 0) -> list[str]:
    """n distinct pronounceable pseudo-words (a few hundred is enough for a real bank on the tiny model)."""
    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ru", "te", "so", "na", "pe", "di", "fu", "gra", "sto", "bel", "vin", "cor", "ax"]
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = "".join(rng.choice(syll, size=int(rng.integers(2, 4))))
        if rng.random() < 0.2:
            w += " " + "".join(rng.choice(syll, size=2))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


@pytest.fixture(scope="session")
def analysis_bank(tiny_model):
    from splice_desktop.core.concepts import build_concept_bank
    from splice_desktop.core.vocab import vocabulary_from_words

    vocab = vocabulary_from_words(random_words(300), "gui_analysis test words")
    return build_concept_bank(tiny_model, vocab, use_cache=False)


@pytest.fixture(scope="session")
def analysis_decomposer(analysis_bank):
    return Decomposer(analysis_bank, None)


@pytest.fixture(scope="session")
def image_embeddings(tiny_model, tmp_path_factory) -> dict[str, np.ndarray]:
    """Unit embeddings of three photo-like images encoded by the tiny model."""
    import torch
    from PIL import Image

    from tests.conftest import make_photo_like

    root = tmp_path_factory.mktemp("analysis-images")
    out: dict[str, np.ndarray] = {}
    for i in range(3):
        path = make_photo_like(root / f"img{i}.jpg", size=(96, 72), seed=i)
        with Image.open(path) as im:
            x = tiny_model.preprocess(im.convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            z = np.asarray(tiny_model.encode_image_tensor(x), dtype=np.float32)[0]
        out[str(path)] = (z / np.linalg.norm(z)).astype(np.float32)
    return out


class GatedDecomposer:
    """A real Decomposer whose first ``decompose`` waits for a gate, to hold the solve worker busy."""

    def __init__(self, inner: Decomposer) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.words = inner.words
        self.matrix = inner.matrix

    def center(self, z):
        return self.inner.center(z)

    def lambda_max(self, z):
        return self.inner.lambda_max(z)

    def decompose(self, z, lam, path=None):
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(20)
        return self.inner.decompose(z, lam, path=path)

    def edit(self, z, base, edits):
        return self.inner.edit(z, base, edits)


@pytest.fixture
def worker(qtbot):
    from splice_desktop.gui.solve_worker import SolveWorker, start_worker, stop_worker

    w = SolveWorker()
    results: list = []
    w.resultReady.connect(results.append)
    thread = start_worker(w, "test-solve")
    w.results = results
    yield w
    assert stop_worker(w, thread)
    assert not thread.isRunning()


def _req(gen, key, z, lam, dec, edits=None):
    from splice_desktop.gui.solve_worker import SolveRequest

    return SolveRequest(generation=gen, key=key, z=z, lam=lam, decomposer=dec, edits=edits or EditState())


# ---------------------------------------------------------------------------------------------- tests


def test_cold_solve_then_path_lookup(qtbot, worker, analysis_decomposer, image_embeddings):
    from splice_desktop.gui.solve_worker import compute_stage
    from splice_desktop.core.progress import CancelToken

    key, z = next(iter(image_embeddings.items()))
    lam = 0.3 * analysis_decomposer.lambda_max(z)
    with qtbot.waitSignal(worker.resultReady, timeout=20000) as blocker:
        worker.submit(_req(1, key, z, lam, analysis_decomposer))
    res = blocker.args[0]
    direct = analysis_decomposer.decompose(z, lam)
    assert res.generation == 1 and res.key == key and worker.cold_solves == 1  # no path yet: exact cold solve
    assert res.base.words == direct.words
    np.testing.assert_allclose(res.base.weights, direct.weights, rtol=1e-5, atol=1e-7)
    assert res.edited is res.base  # no edits
    worker.store.put(analysis_decomposer, key, compute_stage(analysis_decomposer, z, 0.1, CancelToken()))
    with qtbot.waitSignal(worker.resultReady, timeout=20000) as blocker:
        worker.submit(_req(2, key, z, lam, analysis_decomposer))
    assert worker.lookups == 1
    assert blocker.args[0].base.words == direct.words
    np.testing.assert_allclose(blocker.args[0].base.weights, direct.weights, rtol=1e-4, atol=1e-6)
    with qtbot.waitSignal(worker.resultReady, timeout=20000) as blocker:  # below the path's end: cold again
        worker.submit(_req(3, key, z, 0.05 * analysis_decomposer.lambda_max(z), analysis_decomposer))
    assert worker.cold_solves == 2


def test_latest_request_wins_while_busy(qtbot, worker, analysis_decomposer, image_embeddings):
    key, z = list(image_embeddings.items())[1]
    dec = GatedDecomposer(analysis_decomposer)
    lmax = dec.lambda_max(z)
    worker.submit(_req(1, key, z, 0.5 * lmax, dec))
    assert dec.entered.wait(10)  # the worker is stuck in the first solve
    lams = np.linspace(0.1, 0.9, 40) * lmax
    for gen, lam in enumerate(lams, start=2):  # 40 requests while busy
        worker.submit(_req(gen, key, z, float(lam), dec))
    dec.gate.set()
    qtbot.waitUntil(lambda: len(worker.results) >= 1, timeout=20000)
    qtbot.wait(100)
    gens = [r.generation for r in worker.results]
    assert gens == [41], gens  # the stale first answer and the 39 overwritten requests never reach the GUI
    assert worker.results[-1].lam == pytest.approx(float(lams[-1]))
    assert worker.processed == 2 and worker.submitted == 41


def test_path_worker_stages_and_cancel(qtbot, monkeypatch, analysis_decomposer, image_embeddings):
    import splice_desktop.gui.solve_worker as sw

    (ka, za), (kb, zb) = list(image_embeddings.items())[:2]
    gate, entered = threading.Event(), threading.Event()
    real = sw.compute_stage

    def gated(dec, z, ratio, cancel):
        entered.set()
        while not gate.is_set():
            cancel.raise_if_cancelled()
            time.sleep(0.005)
        return real(dec, z, ratio, cancel)

    monkeypatch.setattr(sw, "compute_stage", gated)
    store = sw.PathStore()
    w = sw.PathWorker(store, stages=(0.5, 0.1))
    ready: list = []
    w.pathReady.connect(lambda *a: ready.append(a))
    thread = sw.start_worker(w, "test-path")
    try:
        w.submit(sw.PathRequest(ka, za, analysis_decomposer))
        assert entered.wait(10)
        w.submit(sw.PathRequest(kb, zb, analysis_decomposer))  # another image: A's path is cancelled
        qtbot.waitUntil(lambda: w.cancelled == 1, timeout=10000)
        gate.set()
        qtbot.waitUntil(lambda: len(ready) == 2, timeout=20000)
        assert [r[0] for r in ready] == [kb, kb]
        assert store.get(analysis_decomposer, ka) is None
        path = store.get(analysis_decomposer, kb)
        lmax = analysis_decomposer.lambda_max(zb)
        assert path.lambda_max == pytest.approx(lmax, rel=1e-5)
        assert path.lam_min == pytest.approx(0.1 * lmax, rel=1e-5) or path.stop_reason != "target"
        done = w.stages_done
        w.submit(sw.PathRequest(kb, zb, analysis_decomposer))  # already complete: nothing recomputed
        qtbot.wait(200)
        assert w.stages_done == done
        assert store.get(object(), kb) is None  # keyed by decomposer identity too
    finally:
        assert sw.stop_worker(w, thread)


def test_error_reported_and_worker_survives(qtbot, worker, analysis_decomposer, image_embeddings):
    key, z = next(iter(image_embeddings.items()))
    with qtbot.waitSignal(worker.failed, timeout=20000) as blocker:
        worker.submit(_req(7, key, z, -1.0, analysis_decomposer))
    assert blocker.args[0] == 7 and "lambda" in blocker.args[1]
    with qtbot.waitSignal(worker.resultReady, timeout=20000):
        worker.submit(_req(8, key, z, 0.2, analysis_decomposer))


def test_edits_applied_in_worker(qtbot, worker, analysis_decomposer, image_embeddings):
    key, z = next(iter(image_embeddings.items()))
    lam = 0.2 * analysis_decomposer.lambda_max(z)
    top = analysis_decomposer.decompose(z, lam).words[0]
    with qtbot.waitSignal(worker.resultReady, timeout=20000) as blocker:
        worker.submit(_req(1, key, z, lam, analysis_decomposer, EditState(removed=frozenset({top}))))
    res = blocker.args[0]
    assert top in res.base.words and top not in res.edited.words
    assert res.edited.mode == "zero"


def test_head_worker_builds_off_gui_thread(qtbot, tiny_model):
    zs = pytest.importorskip("splice_desktop.core.zeroshot")
    from splice_desktop.gui.solve_worker import HeadRequest, HeadWorker, start_worker, stop_worker

    w = HeadWorker()
    thread = start_worker(w, "test-head")
    try:
        classes = zs.classes_from_text("cat\ndog\nfire truck")
        with qtbot.waitSignal(w.headReady, timeout=30000) as blocker:
            w.submit(HeadRequest(3, tiny_model, classes))
        gen, head = blocker.args
        assert gen == 3
        assert np.asarray(head.text_matrix).shape[0] == 3
    finally:
        assert stop_worker(w, thread)
