"""Pipeline throughput, measured side by side in one run (issue 6, "Pipeline"):

1. images/s of the full path (file -> decode in draft mode -> preprocess -> encode, decode overlapped in threads,
   optionally + one SpLiCE decomposition per image) against the bare model forward on ready tensors; same model
   (random-init ViT-B-32: timing needs no weights), same batch size, same images. Photo-like JPEGs of ~1 MP (web)
   and ~12 MP (camera) are generated in a temp folder. Target: ratio >= 0.9 at 1 MP; the 12 MP ratio is reported.
2. texts/s of the truncated causal text encoder (core.text_encoder.encode_texts) against stock encode_text on
   ViT-B-32 with 1-3 word concepts. Target >= 10x.
3. load time of a 15k x 512 float32 .npy: memory-mapped vs np.load.

Full and bare runs alternate (bare, full, bare, ..., bare); each full run is divided by the mean of the bare runs
on either side and the median of these paired ratios is reported, so drifting load from other processes on a
shared machine hits both sides alike. Also printed: the best-of-N ratio (fastest run of each side, the runs least
disturbed by other processes) and the CPU-time ratio (what the ratio would be if the cores were saturated and
nothing else ran; it moves less with other load). Both sides get one untimed warm-up run. The last line per size
is the per-image CPU of the pipeline's own work (measured in a decode thread) against the forward's, and the ratio
that leaves when the forward already keeps every core busy: decode CPU cannot hide on 2 cores, only shrink.

    .venv/bin/python benchmarks/encode.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/encode.py --quick    # short run (~1 minute)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import photo_like  # noqa: E402
from _models import random_vit_b32  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {affinity} usable cores, torch {torch.__version__}, Python {platform.python_version()}"


def make_images(folder: Path, size: tuple[int, int], n: int, distinct: int) -> list[Path]:
    """``distinct`` generated photos, copied to ``n`` files (decode cost per file is what matters, not novelty)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [photo_like(folder / f"src{i}.jpg", size, seed=i) for i in range(distinct)]
    paths = []
    for i in range(n):
        dst = folder / f"img{i:04d}.jpg"
        shutil.copyfile(sources[i % distinct], dst)
        paths.append(dst)
    return paths


def bench_images(loaded, paths: list[Path], batch_size: int, workers: int, reps: int, decomposer) -> dict:
    import torch

    from splice_desktop.core.embeddings import encode_images

    # Ready tensors for the bare forward: preprocessed once, outside the clock.
    from splice_desktop.core.images import load_image

    ready = [loaded.preprocess(load_image(p, target_size=loaded.image_size)) for p in paths]
    batches = [torch.stack(ready[i : i + batch_size]) for i in range(0, len(ready), batch_size)]

    def bare() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        for b in batches:
            z = loaded.encode_image_tensor(b)
            if decomposer is not None:
                for row in z:
                    decomposer(row)
        return len(paths) / (time.perf_counter() - t), time.process_time() - c

    def full() -> tuple[float, float]:
        def on_batch(results, failures) -> None:
            assert not failures, failures
            if decomposer is not None:
                for r in results:
                    decomposer(r.embedding)

        t, c = time.perf_counter(), time.process_time()
        rep = encode_images(loaded, paths, batch_size=batch_size, workers=workers, on_batch=on_batch)
        rate, cpu = len(rep.results) / (time.perf_counter() - t), time.process_time() - c
        assert len(rep.results) == len(paths)
        return rate, cpu

    bare()  # warm-up (allocator, oneDNN kernels)
    full()  # warm-up of the full path too (thread pool, first decode in each thread), so both sides start warm
    # bare, full, bare, full, ..., bare: each full run is compared with the mean of the bare runs either side,
    # so slow drifts in machine load cancel; the median over pairs is reported.
    b_runs = [bare()]
    f_runs = []
    for _ in range(reps):
        f_runs.append(full())
        b_runs.append(bare())
    ratios = [f[0] / ((b_runs[i][0] + b_runs[i + 1][0]) / 2) for i, f in enumerate(f_runs)]
    cpu_ratio = statistics.median(b[1] for b in b_runs) / statistics.median(f[1] for f in f_runs)
    return {
        # best-of-N: the fastest run of each side is the one least disturbed by other processes
        "best_ratio": max(f[0] for f in f_runs) / max(b[0] for b in b_runs),
        "bare": statistics.median(b[0] for b in b_runs),
        "full": statistics.median(f[0] for f in f_runs),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_ratio": cpu_ratio,
        "forward_cpu_ms": 1000 * statistics.median(b[1] for b in b_runs) / len(paths),
    }


def bench_decode(loaded, paths: list[Path]) -> dict:
    """Per image, single-threaded: decode (+ Pillow resize to the model size) with and without draft mode, and
    the CPU time of the pipeline's own per-image work (read once, sha256, draft decode, uint8 resize + crop)."""
    from PIL import Image

    from concurrent.futures import ThreadPoolExecutor

    from splice_desktop.core.embeddings import ImagePreprocessor, decode_thread_init, prepare_image
    from splice_desktop.core.images import load_image

    target = loaded.image_size
    out = {}
    for label, tgt in (("no draft", None), ("draft", target)):
        t = time.perf_counter()
        for p in paths:
            img = load_image(p, target_size=tgt)
            img.resize((target, target), Image.Resampling.BICUBIC)
        out[label] = 1000 * (time.perf_counter() - t) / len(paths)
    pre = ImagePreprocessor(loaded.preprocess)

    def prepare_all() -> float:
        c = time.process_time()
        for p in paths:
            prepare_image(loaded, p, preprocessor=pre, per_batch=True)
        return 1000 * (time.process_time() - c) / len(paths)

    # In a decode thread as the pipeline runs it (1 torch thread), while this thread only waits.
    with ThreadPoolExecutor(1, initializer=decode_thread_init) as pool:
        pool.submit(prepare_all).result()  # warm-up
        out["prepare"] = pool.submit(prepare_all).result()
    return out


def ceiling(forward_cpu_ms: float, prepare_cpu_ms: float) -> float:
    """Best possible full/bare ratio when the forward already keeps every core busy: decode CPU must come out of
    the same cores, so the full path needs (forward + prepare) CPU per image where the bare side needs forward."""
    return forward_cpu_ms / (forward_cpu_ms + prepare_cpu_ms)


def bench_texts(loaded, n_fast: int, n_stock: int, batch_size: int) -> dict:
    import torch

    from splice_desktop.core.text_encoder import encode_texts, supports_truncation

    words = concept_words(max(n_fast, n_stock))
    assert supports_truncation(loaded)
    encode_texts(loaded, words[:64], batch_size=batch_size)  # warm-up
    t = time.perf_counter()
    fast = encode_texts(loaded, words[:n_fast], batch_size=batch_size)
    fast_rate = n_fast / (time.perf_counter() - t)

    stock_words = words[:n_stock]
    t = time.perf_counter()
    with torch.inference_mode():
        stock = [
            torch.nn.functional.normalize(
                loaded.model.encode_text(loaded.tokenizer(stock_words[i : i + batch_size])), dim=-1
            ).numpy()
            for i in range(0, n_stock, batch_size)
        ]
    stock_rate = n_stock / (time.perf_counter() - t)
    diff = float(np.abs(np.concatenate(stock) - fast[:n_stock]).max())
    return {"fast": fast_rate, "stock": stock_rate, "ratio": fast_rate / stock_rate, "max_diff": diff}


def concept_words(n: int) -> list[str]:
    """1-3 word concepts: the project's vocabulary if built, else the SpLiCE reference's, else generated."""
    candidates = [
        ROOT / "splice_desktop" / "data" / "default_vocab.txt",
        ROOT.parent / "shared" / "ref" / "splice" / "vocab" / "laion.txt",
    ]
    for path in candidates:
        if path.is_file():
            words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
            words = [w for w in words if 1 <= len(w.split()) <= 3]
            if len(words) >= n:
                rng = np.random.default_rng(0)
                return [words[i] for i in rng.choice(len(words), n, replace=False)]
    rng = np.random.default_rng(0)
    syll = ["ka", "lo", "mi", "ten", "dra", "vel", "son", "pir", "gu", "ne"]
    return [
        " ".join("".join(rng.choice(syll, rng.integers(1, 4))) for _ in range(rng.integers(1, 4))) for _ in range(n)
    ]


def bench_mmap(folder: Path, reps: int = 5) -> dict:
    arr = np.random.default_rng(0).normal(size=(15000, 512)).astype(np.float32)
    path = folder / "cache.npy"
    np.save(path, arr)
    load_t, mmap_t, touch_t = [], [], []
    for _ in range(reps):
        t = time.perf_counter()
        np.load(path)
        load_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        m = np.load(path, mmap_mode="r")
        mmap_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        float(m[:, 0].sum())  # touch one column: pages of every row come in, as a first matvec would
        touch_t.append(time.perf_counter() - t)
        del m
    ms = lambda v: 1000 * statistics.median(v)  # noqa: E731
    return {"np.load": ms(load_t), "mmap open": ms(mmap_t), "mmap first touch": ms(touch_t)}


def make_decomposer():
    """One exact positive-lasso solve per image on a random centred 10k x 512 bank (core.solvers), or None."""
    try:
        from splice_desktop.core.solvers import lambda_max, solve_positive_lasso
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    C = rng.normal(size=(10000, 512)).astype(np.float32)
    C -= C.mean(axis=0)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    C = np.ascontiguousarray(C)

    def decompose(z: np.ndarray) -> None:
        z = np.asarray(z, np.float32)
        solve_positive_lasso(C, z, 0.25 * lambda_max(C, z))

    return decompose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images, texts and repetitions")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="decode threads of the full path")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = all usable cores)")
    parser.add_argument("--decompose", action="store_true", help="add one SpLiCE solve per image to both sides")
    parser.add_argument("--reps", type=int, default=0,
                        help="full/bare pairs per image size (default 5: a median of 5 survives two disturbed runs)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: images,texts,mmap")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import torch

    # Torch threads: all usable cores. The forward is the bottleneck and scales with cores; decode threads
    # mostly wait in libjpeg with the GIL released and need far less CPU than the forward (draft mode), so
    # giving torch every core and letting decode interleave beats reserving a core for decoding, which would
    # idle that core whenever no decode is pending. Interop threads = 1: we never run torch ops in parallel.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or cores
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    print(f"machine: {machine()}")
    print(f"torch threads: {torch.get_num_threads()} (intra-op), decode workers: {args.workers}, "
          f"batch size: {args.batch_size}, mode: {'quick' if args.quick else 'full'}")

    t0 = time.perf_counter()
    loaded = random_vit_b32()
    print(f"model: random-init ViT-B-32 (timing only), built in {time.perf_counter() - t0:.1f} s")
    tmp = Path(tempfile.mkdtemp(prefix="splice-bench-"))
    try:
        if "images" not in skip:
            decomposer = make_decomposer() if args.decompose else None
            if args.decompose and decomposer is None:
                print("decompose: core.solvers not available, skipped")
            sizes = {"1 MP": (1152, 864), "12 MP": (4000, 3000)}
            n = {"1 MP": 32 if args.quick else 96, "12 MP": 16 if args.quick else 48}
            reps = args.reps or 5
            print("\n== images/s: full path (decode+preprocess+encode"
                  + ("+decompose" if decomposer else "") + ") vs bare forward on ready tensors ==")
            for label, size in sizes.items():
                t = time.perf_counter()
                paths = make_images(tmp / label.replace(" ", ""), size, n[label], distinct=8)
                gen = time.perf_counter() - t
                dec = bench_decode(loaded, paths[:8])
                res = bench_images(loaded, paths, args.batch_size, args.workers, reps, decomposer)
                mb = paths[0].stat().st_size / 1e6
                print(f"{label:>5} ({size[0]}x{size[1]}, {mb:.1f} MB JPEG, {n[label]} files, generated in {gen:.0f} s): "
                      f"decode+resize {dec['no draft']:.0f} ms -> {dec['draft']:.0f} ms with draft mode; "
                      f"bare {res['bare']:.1f} img/s, full {res['full']:.1f} img/s, ratio {res['ratio']:.2f}"
                      + ("  (target >= 0.90)" if label == "1 MP" else "")
                      + f"\n        paired ratios {' '.join(f'{r:.2f}' for r in res['ratios'])}; "
                      f"best-of ratio {res['best_ratio']:.2f}; "
                      f"CPU-time ratio bare/full {res['cpu_ratio']:.2f} (less sensitive to other load)"
                      f"\n        per image CPU: pipeline prep (read+sha256+decode+resize) {dec['prepare']:.1f} ms, "
                      f"bare forward{'+decompose' if decomposer else ''} {res['forward_cpu_ms']:.0f} ms; "
                      f"ceiling when both cores are busy {ceiling(res['forward_cpu_ms'], dec['prepare']):.2f}")
        if "texts" not in skip:
            n_fast, n_stock = (1024, 128) if args.quick else (4096, 512)
            res = bench_texts(loaded, n_fast, n_stock, batch_size=256)
            print(f"\n== texts/s, 1-3 word concepts, ViT-B-32 ==\n"
                  f"encode_texts (causal truncation) {res['fast']:.0f}/s on {n_fast}; stock encode_text "
                  f"{res['stock']:.1f}/s on {n_stock}; ratio {res['ratio']:.1f}x (target >= 10x); "
                  f"max |diff| {res['max_diff']:.1e}; 15k vocabulary: {15000 / res['fast']:.0f} s vs "
                  f"{15000 / res['stock'] / 60:.0f} min")
        if "mmap" not in skip:
            res = bench_mmap(tmp)
            print(f"\n== 15k x 512 float32 .npy load ==\nnp.load {res['np.load']:.1f} ms; memory-mapped open "
                  f"{res['mmap open']:.2f} ms (+ {res['mmap first touch']:.1f} ms to touch every row once); "
                  f"ratio {res['np.load'] / res['mmap open']:.0f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
