"""Positive-lasso solver speed, measured side by side in one run on the same inputs (issue 6, "Solver").

For each size (10k x 512 and 15k x 768 concepts) and a handful of synthetic "images" (planted-sparse z: a positive
combination of 10 atoms plus noise, so l0 at the authors' lambda is about that of a real photo), it times:

- cold:    ``solve_positive_lasso`` at one lambda, from nothing (what the first slider position costs);
- path:    ``compute_path`` down to 0.02 x lambda_max (after which every slider position is a lookup);
- lookup:  ``LassoPath.weights_at`` at random lambdas (a slider drag);
- sklearn: ``Lasso(positive=True)`` exactly as the SpLiCE reference calls it (alpha=lam/(2d), tol=1e-6,
           max_iter=10000, X = C.T float32);
- ADMM:    the reference ADMM (rho=5, tol=1e-6, max_iter=2000, absolute stopping rule). Run to completion in the
           Woodbury form (same iterates, d x d factor). The reference's own k x k form is too slow to run 2000
           iterations on a CPU; its setup and per-iteration cost are measured and the total is *projected* as
           setup + iterations x per-iteration (labelled as such).

Lambda: the reference's default 0.25 (absolute; l0 about 9 on the README image) is used when it is below
lambda_max, and 0.25 x lambda_max is also reported.

Threads (set per call with threadpoolctl, so both settings are measured side by side in one run):
- this solver runs with ``--threads`` BLAS threads, default all cores: what the app does (numpy's OpenBLAS uses
  every core unless told otherwise). Its two passes over C are memory-bound products that a second core speeds up
  ~2-3x. It is also timed with 1 thread, and that like-for-like ratio is printed too;
- sklearn runs with 1 BLAS thread, its fastest setting: its coordinate descent is sequential, and with 2 threads
  its short level-1 calls measured 16-30 ms instead of 10-13 ms here (and left the cores so busy that the next
  solve of any kind was slowed for tens of milliseconds).
The app's Decomposer calls ``prepare_dictionary`` once per concept bank; so does this benchmark (its cost is
printed). It keeps a float16 copy of C when torch's float16 matrix-vector product beats numpy's float32 one on
flushed caches here (half the bytes for the two memory-bound passes of a cold solve); torch then runs those two
products with its own threads (all cores). The package sets OPENBLAS_THREAD_TIMEOUT before numpy loads (see
splice_desktop/__init__.py), and this script imports the package first so that it measures the same setup.

    .venv/bin/python benchmarks/solver.py            # both sizes, 1-5 minutes on 2 cores (load dependent)
    .venv/bin/python benchmarks/solver.py --quick    # 10k x 512 only, fewer images, no k x k ADMM
    .venv/bin/python benchmarks/solver.py --gui-stall  # GUI event-loop stalls while paths run on a worker
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k x 512 only, 3 images, skip the k x k ADMM")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="BLAS threads for this solver (default: all cores, as in the app)")
    ap.add_argument("--images", type=int, default=None, help="number of synthetic images per size")
    ap.add_argument("--gui-stall", action="store_true",
                    help="only measure the worst stall of a Qt event loop while whole paths (15k x 768) are computed "
                         "on a worker thread, as the app's PathWorker does")
    return ap.parse_args()


ARGS = _parse() if __name__ == "__main__" else None

import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import splice_desktop  # noqa: E402,F401 - the app's thread environment (OpenBLAS spin), set before numpy loads

import numpy as np  # noqa: E402

from _timing import Stats, fmt_ms, machine_summary  # noqa: E402

from splice_desktop.core.solvers import (  # noqa: E402
    admm_reference,
    compute_path,
    lambda_max,
    objective,
    prepare_dictionary,
    solve_positive_lasso,
)

AUTHORS_LAMBDA = 0.25
STAGE1 = 0.2  # the app's first background path stage (gui/solve_worker.py PATH_STAGES)
THREADS = ARGS.threads if ARGS is not None else 1


@contextmanager
def blas_threads(n: int):
    """n BLAS threads for numpy, and n torch threads when torch is loaded (the float16 passes run in torch)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def timed(fn, threads: int) -> tuple[float, object]:
    with blas_threads(threads):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


def make_inputs(k: int, d: int, n_images: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A centred random dictionary (unit rows) and planted-sparse unit z's (10 atoms + noise)."""
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((k, d)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    C -= C.mean(axis=0)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    zs = []
    for _ in range(n_images):
        idx = rng.choice(k, size=10, replace=False)
        z = rng.uniform(0.3, 1.0, 10) @ C[idx].astype(np.float64)
        z /= np.linalg.norm(z)
        noise = rng.standard_normal(d)
        z = z + 0.8 * noise / np.linalg.norm(noise)  # cos(z, span) ~ 0.8: a real photo is far from sparse
        zs.append((z / np.linalg.norm(z)).astype(np.float32))
    return np.ascontiguousarray(C), zs


def sklearn_reference(C: np.ndarray, z: np.ndarray, lam: float) -> np.ndarray:
    """Exactly the SpLiCE reference call (splice/model.py: solver='skl')."""
    from sklearn.linear_model import Lasso

    d = C.shape[1]
    model = Lasso(alpha=lam / (2 * d), fit_intercept=False, positive=True, max_iter=10000, tol=1e-6)
    model.fit(C.T, z)
    return model.coef_


def bench_size(k: int, d: int, n_images: int, full_admm: bool, lookups: int = 2000) -> dict:
    print(f"\n## {k} concepts x d={d}, {n_images} synthetic images", flush=True)
    C, zs = make_inputs(k, d, n_images, seed=k + d)
    t0 = time.perf_counter()
    backend = prepare_dictionary(C)  # what the Decomposer does once per concept bank
    print(f"  prepare_dictionary: {backend} in {(time.perf_counter() - t0) * 1e3:.0f} ms (once per concept bank; "
          f"includes the first torch import when float16 is tried)", flush=True)
    cold, cold1, cold_rel, path_t, sk_t, sk_rel, stage_t, stage_l0 = [], [], [], [], [], [], [], []
    lams_used = []
    l0s = []
    paths = []
    for z in zs:
        lmax = lambda_max(C, z)
        lam = AUTHORS_LAMBDA if AUTHORS_LAMBDA < lmax else 0.25 * lmax
        lams_used.append((lam, lmax))
        # Interleaved per image, so machine load hits every method alike.
        t, w = timed(lambda: solve_positive_lasso(C, z, lam), THREADS)
        cold.append(t)
        cold1.append(timed(lambda: solve_positive_lasso(C, z, lam), 1)[0])
        t, p = timed(lambda: compute_path(C, z, lam_min_ratio=0.02), THREADS)
        path_t.append(t)
        paths.append(p)
        t, p_stage = timed(lambda: compute_path(C, z, lam_min_ratio=STAGE1), THREADS)
        stage_t.append(t)
        stage_l0.append(p_stage.l0_range[1])
        t, ref = timed(lambda: sklearn_reference(C, z, lam), 1)
        sk_t.append(t)
        lam_r = 0.25 * lmax
        cold_rel.append(timed(lambda: solve_positive_lasso(C, z, lam_r), THREADS)[0])
        sk_rel.append(timed(lambda: sklearn_reference(C, z, lam_r), 1)[0])
        o, o_ref = objective(C, z, w, lam), objective(C, z, ref, lam)
        l0s.append(int(np.count_nonzero(w)))
        print(
            f"  image: lambda_max={lmax:.3f} lambda={lam:.3f} l0={l0s[-1]} "
            f"(sklearn {int(np.count_nonzero(ref > 1e-7))}) "
            f"objective ours-sklearn={o - o_ref:+.2e} (ours lower is better) path knots={len(p)} "
            f"l0@0.02={p.l0_at(0.02 * lmax)}; cold {cold[-1] * 1e3:.2f} ms ({THREADS} thr) / {cold1[-1] * 1e3:.2f} ms "
            f"(1 thr), sklearn {sk_t[-1] * 1e3:.1f} ms",
            flush=True,
        )

    # Slider lookups on the last path, at random lambdas across its range.
    rng = np.random.default_rng(1)
    p = paths[-1]
    lam_q = rng.uniform(p.lam_min, p.lambda_max, lookups)
    look = []
    for lam in lam_q:
        t0 = time.perf_counter()
        p.weights_at(lam)
        look.append(time.perf_counter() - t0)

    # ADMM on the first image: Woodbury form to completion (same iterates as the reference).
    z = zs[0]
    lam = lams_used[0][0]
    admm_wood, (w_admm, iters) = timed(lambda: admm_reference(C, z, lam, seed=0, woodbury=True), THREADS)
    o_admm = objective(C, z, w_admm, lam)
    o_ex = objective(C, z, solve_positive_lasso(C, z, lam), lam)
    print(f"  ADMM (Woodbury form): {iters} iterations, objective rel. gap to exact {(o_admm - o_ex) / o_ex:+.2e}")
    admm_proj = None
    if full_admm:
        few = 3
        tm: dict = {}
        timed(lambda: admm_reference(C, z, lam, seed=0, max_iter=few, timings=tm), THREADS)
        per_iter = tm["iterations_s"] / few
        admm_proj = tm["setup_s"] + iters * per_iter
        print(
            f"  ADMM (reference k x k form): setup {tm['setup_s']:.1f} s, {per_iter * 1e3:.0f} ms/iteration (measured "
            f"over {few}); projected for the {iters} iterations above = {admm_proj:.0f} s"
        )

    res = {
        "size": f"{k}x{d}",
        "cold": Stats(tuple(cold)),
        "cold1": Stats(tuple(cold1)),
        "cold_rel": Stats(tuple(cold_rel)),
        "path": Stats(tuple(path_t)),
        "stage": Stats(tuple(stage_t)),
        "lookup": Stats(tuple(look)),
        "sklearn": Stats(tuple(sk_t)),
        "sklearn_rel": Stats(tuple(sk_rel)),
        "admm_wood": admm_wood,
        "admm_iters": iters,
        "admm_proj": admm_proj,
        "l0": l0s,
    }
    print(f"  {'method':44s} {'median':>10s} {'p95':>10s}")
    rows = [
        (f"cold solve, lambda={AUTHORS_LAMBDA} (l0 median {int(np.median(l0s))}), {THREADS} thr", res["cold"]),
        ("cold solve, same lambda, 1 BLAS thread", res["cold1"]),
        ("sklearn Lasso(positive=True), same lambda", res["sklearn"]),
        ("cold solve, lambda=0.25 x lambda_max", res["cold_rel"]),
        ("sklearn, lambda=0.25 x lambda_max", res["sklearn_rel"]),
        ("whole path to 0.02 x lambda_max", res["path"]),
        (f"path to {STAGE1} x lambda_max (l0 up to {int(np.median(stage_l0))})", res["stage"]),
        (f"slider lookup weights_at (n={lookups})", res["lookup"]),
    ]
    for name, st in rows:
        print(f"  {name:44s} {fmt_ms(st.median):>10s} {fmt_ms(st.p95):>10s}")
    print(f"  {'ADMM reference, Woodbury form (1 image)':44s} {fmt_ms(admm_wood):>10s}")
    if admm_proj is not None:
        print(f"  {'ADMM reference, k x k form (projected)':44s} {fmt_ms(admm_proj):>10s}")
    print(
        f"  ratios: sklearn/cold = {res['sklearn'].median / res['cold'].median:.1f}x (target >= 10; "
        f"{res['sklearn'].median / res['cold1'].median:.1f}x with 1 BLAS thread); "
        f"at 0.25 x lambda_max {res['sklearn_rel'].median / res['cold_rel'].median:.1f}x; "
        f"path/sklearn = {res['path'].median / res['sklearn'].median:.2f} (target < 1); "
        f"ADMM(Woodbury)/cold = {admm_wood / res['cold'].median:.0f}x; "
        f"lookup p95 = {res['lookup'].p95 * 1e3:.3f} ms (target < 1 ms)",
        flush=True,
    )
    return res


def gui_stall(n_paths: int = 3) -> None:
    """Worst gap of a 5 ms QTimer on the GUI thread while a worker thread (nice 7, as the app's workers) computes
    whole paths: does the path loop, which holds the GIL between numpy calls, starve the event loop?"""
    import threading

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from _timing import StallProbe, pump_events

    sys.setswitchinterval(0.001)  # as the app (gui/app.py)
    C, zs = make_inputs(15_000, 768, n_paths, seed=1)
    prepare_dictionary(C)
    app = QApplication.instance() or QApplication([])
    done = threading.Event()

    def work() -> None:
        try:
            os.nice(7)
        except (AttributeError, OSError):
            pass
        for z in zs:
            compute_path(C, z, lam_min_ratio=0.02)
        done.set()

    probe = StallProbe()
    probe.start()
    pump_events(app, 0.3)
    t0 = time.perf_counter()
    threading.Thread(target=work, daemon=True).start()
    pump_events(app, 600, done.is_set)
    stalls = np.array(probe.stop()) * 1e3
    print(f"{n_paths} whole paths (15k x 768) on a worker thread in {time.perf_counter() - t0:.1f} s: worst GUI "
          f"stall {stalls.max():.1f} ms, p99 {np.percentile(stalls, 99):.1f} ms over {stalls.size} ticks")


def main() -> None:
    args = ARGS
    if args.gui_stall:
        gui_stall()
        return
    print("# benchmarks/solver.py")
    print(f"machine: {machine_summary()}")
    print(f"numpy {np.__version__}; this solver and ADMM with {args.threads} BLAS thread(s) (threadpoolctl), "
          f"sklearn with 1 (its fastest); OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")
    try:
        import sklearn

        print(f"scikit-learn {sklearn.__version__}")
    except ImportError:
        sys.exit("scikit-learn is needed for the reference timings: pip install scikit-learn")
    sizes = [(10_000, 512)] if args.quick else [(10_000, 512), (15_000, 768)]
    n_images = args.images or (3 if args.quick else 7)
    results = [bench_size(k, d, n_images, full_admm=(not args.quick and k == 10_000)) for k, d in sizes]
    print("\n## summary")
    print(f"{'size':>10s} {'cold med':>10s} {'sklearn med':>12s} {'sk/cold':>8s} {'(1 thr)':>8s} {'path med':>10s} "
          f"{'path/sk':>8s} {'lookup p95':>11s}")
    for r in results:
        print(
            f"{r['size']:>10s} {fmt_ms(r['cold'].median):>10s} {fmt_ms(r['sklearn'].median):>12s} "
            f"{r['sklearn'].median / r['cold'].median:>7.1f}x {r['sklearn'].median / r['cold1'].median:>7.1f}x "
            f"{fmt_ms(r['path'].median):>10s} "
            f"{r['path'].median / r['sklearn'].median:>8.2f} {r['lookup'].p95 * 1e3:>8.3f} ms"
        )


if __name__ == "__main__":
    main()
