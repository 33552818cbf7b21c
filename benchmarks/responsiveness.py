"""Worst event-loop stall of the real main window while it encodes a folder of images.

A QTimer on the GUI thread ticks every 5 ms; a stall is the gap between two ticks minus 5 ms. The same timer first
runs for a few seconds with the window idle (the baseline of this machine), then while 200 photo-like JPEGs are
dropped in, thumbnailed and encoded with the tiny model, optionally (``--click-ms``) while a simulated user
clicks through the images (each click decodes the large preview and solves the lasso path in the background).
Target (issue 6): worst < 50 ms.

    .venv/bin/python benchmarks/responsiveness.py [--images 200] [--size 1024x768] [--why]

Runs offscreen unless a display is set. Caches go to a temp folder, so every image is really encoded.
Each of the largest stalls is reported with the phase it happened in (after the images were listed, after the
first results arrived, after the first chart was shown, after encoding finished). ``--why`` also samples, during
stalls, the GUI thread's Python stack and (Linux) its scheduler counters: time on a CPU, time runnable but
waiting for a CPU (other threads and processes), and time blocked (mostly waiting for the GIL). The sampler is
a Python thread itself, so numbers with ``--why`` are a little worse.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import make_jpegs  # noqa: E402
from _models import random_vit_b32  # noqa: E402
from _timing import StallProbe, fresh_app_environment, pump_events  # noqa: E402


class Milestones:
    """When the window reached each stage, to name the phase a stall happened in."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, str]] = []

    def mark(self, label: str) -> None:
        if all(m != label for _, m in self.marks):
            self.marks.append((time.perf_counter(), label))

    def phase_at(self, t: float) -> str:
        done = [label for when, label in self.marks if when <= t]
        return f"after {done[-1]}" if done else "while the images were being listed"


class StallSampler(threading.Thread):
    """``--why``: every 2 ms, record the GUI thread's scheduler counters and, while the probe is late, its stack."""

    def __init__(self, probe: StallProbe, late_s: float = 0.012, period_s: float = 0.002) -> None:
        super().__init__(name="stall-sampler", daemon=True)
        self.probe, self.late_s, self.period_s = probe, late_s, period_s
        main = threading.main_thread()
        self.main_ident = main.ident
        self.schedstat = Path(f"/proc/self/task/{main.native_id}/schedstat")
        self.stacks: list[tuple[float, tuple[str, ...]]] = []
        self.sched: list[tuple[float, int, int]] = []  # (time, ns on a CPU, ns runnable but not running)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            now = time.perf_counter()
            try:
                on_cpu, waiting, _ = self.schedstat.read_text().split()
                self.sched.append((now, int(on_cpu), int(waiting)))
            except (OSError, ValueError):
                pass
            if now - self.probe._last > self.late_s:
                frame, stack = sys._current_frames().get(self.main_ident), []
                while frame is not None:
                    stack.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
                    frame = frame.f_back
                self.stacks.append((now, tuple(reversed(stack))))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def _sched_at(self, t: float) -> Optional[tuple[float, int, int]]:
        before = [s for s in self.sched if s[0] <= t]
        return before[-1] if before else (self.sched[0] if self.sched else None)

    def explain(self, start: float, end: float) -> list[str]:
        lines = []
        a, b = self._sched_at(start), self._sched_at(end)
        if a is not None and b is not None and b[0] > a[0]:
            wall, cpu, queued = (b[0] - a[0]) * 1000, (b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6
            lines.append(f"GUI thread over {wall:.0f} ms: on a CPU {cpu:.0f} ms, waiting for a CPU {queued:.0f} ms, "
                         f"blocked (GIL, locks) {max(0.0, wall - cpu - queued):.0f} ms")
        counts: Counter = Counter()
        for when, stack in self.stacks:
            if start <= when <= end:
                inner = [f for f in stack if not f.startswith(("main:", "<module>:", "run_for:", "finished:"))]
                counts[" > ".join(inner[-4:]) or "(no Python frame: in Qt's C++ or waiting for the GIL)"] += 1
        lines += [f"{n:3d} samples in {where}" for where, n in counts.most_common(4)]
        return lines


def patch_random_vit() -> None:
    """Benchmark only: make load_model build ViT-B-32 with random weights (real compute cost, meaningless output).

    Pretrained weights are not available offline here; timing does not depend on the weight values.
    """
    import splice_desktop.core.models as models

    original = models.load_model

    def load(spec, device="auto", cache_dir=None):
        if spec.pretrained != "random-benchmark-weights":
            return original(spec, device, cache_dir)
        return random_vit_b32(spec)

    models.load_model = load


def summary(name: str, stalls: list[float]) -> str:
    s = sorted(stalls)
    p99 = s[int(0.99 * (len(s) - 1))] if s else float("nan")
    over = sum(1 for x in s if x > 0.05)
    return (f"{name:<28}: worst {max(s) * 1000:6.1f} ms  p99 {p99 * 1000:5.1f} ms  median {statistics.median(s) * 1000:4.1f} ms"
            f"  ticks {len(s)}  stalls>50ms {over}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="1024x768", help="JPEG size WxH (default about 0.8 MP)")
    parser.add_argument("--vocab", default=None, help="vocabulary file (default: the bundled one)")
    parser.add_argument("--model", choices=("tiny", "vit-b-32-random"), default="tiny",
                        help="tiny demo model, or ViT-B-32 with random weights (real compute; speed only)")
    parser.add_argument("--vocab-size", type=int, default=None, help="keep only k vocabulary words (plain order)")
    parser.add_argument("--why", action="store_true",
                        help="sample the GUI thread during stalls (stack, CPU, run queue, blocked time)")
    parser.add_argument("--click-ms", type=int, default=0,
                        help="also simulate a user selecting another image every N ms (0 = no clicks: the issue's "
                             "definition, encoding only)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    tmp = fresh_app_environment("splice-resp-")
    print(f"generating {args.images} JPEGs of {size[0]}x{size[1]}…", flush=True)
    paths = make_jpegs(tmp / "images", args.images, size)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from splice_desktop.gui.main_window import MainWindow
    from splice_desktop.gui.settings import PipelineConfig, isolate_settings

    isolate_settings(tmp / "settings")
    if args.model == "vit-b-32-random":
        patch_random_vit()
        cfg = PipelineConfig(model_name="ViT-B-32", pretrained="random-benchmark-weights", checkpoint=None,
                             device="cpu", vocab_path=args.vocab, vocab_size=args.vocab_size or 2000,
                             vocab_order="plain")
    else:
        cfg = PipelineConfig(model_name="splice-tiny-random", pretrained=None, checkpoint=None, device="cpu",
                             vocab_path=args.vocab, vocab_size=args.vocab_size,
                             vocab_order="plain" if args.vocab_size else "ascending")
    print(f"model: {args.model}", flush=True)
    win = MainWindow(config=cfg)
    win.resize(1280, 800)
    win.show()
    ready: list = []
    win.pipelineReady.connect(ready.append)
    pump_events(app, 900, until=lambda: bool(ready))
    if not ready:
        print("the pipeline did not load", file=sys.stderr)
        return 1
    pump_events(app, 1.0)

    probe = StallProbe()
    probe.start()
    pump_events(app, 3.0)
    idle = probe.stop()

    keys = [str(p.resolve()) for p in paths]  # before the probe starts: the benchmark's own work is not measured
    milestones = Milestones()
    win.imagesAdded.connect(lambda _keys: milestones.mark("the images were listed"))
    win.encodingFinished.connect(lambda: milestones.mark("encoding finished"))
    win.image_model.dataChanged.connect(  # rows turn "encoded" as results are applied
        lambda *_: len(win.embeddings) and milestones.mark("the first results arrived"))
    if win.analysis is not None:
        win.analysis.decompositionChanged.connect(
            lambda dec: dec is not None and milestones.mark("the first chart was shown"))
    probe.start()
    sampler = StallSampler(probe) if args.why else None
    if sampler is not None:
        sampler.start()
    t0 = time.perf_counter()
    win.add_paths([tmp / "images"])
    clicks = 0
    next_click = time.monotonic() + args.click_ms / 1000

    def finished() -> bool:
        return len(win.embeddings) + len(win.failures) >= len(paths) and win.encoder is None

    while not finished():
        app.processEvents()
        time.sleep(0.001)
        if args.click_ms and time.monotonic() >= next_click:  # a user clicking through the images
            win.select_image(keys[(clicks * 7) % len(keys)])
            clicks += 1
            next_click = time.monotonic() + args.click_ms / 1000
        if time.perf_counter() - t0 > 1800:
            print("timed out", file=sys.stderr)
            break
    elapsed = time.perf_counter() - t0
    pump_events(app, 1.0)  # the last solve and preview
    busy = probe.stop()
    if sampler is not None:
        sampler.stop()
    print(f"encoded {len(win.embeddings)} images in {elapsed:.1f} s ({len(win.embeddings) / elapsed:.1f} img/s), "
          f"{clicks} simulated clicks, {len(win.failures)} failures")
    print(summary("idle window (baseline)", idle))
    print(summary(f"while encoding {len(paths)} images", busy))
    print("largest stalls (t from the drop):")
    for stall, start, end in probe.largest():
        print(f"  {stall * 1000:5.1f} ms at t={start - probe.t0:.3f} s, {milestones.phase_at(start)}")
        for line in sampler.explain(start, end) if sampler is not None else []:
            print(f"      {line}")
    print(f"worst stall while encoding: {max(busy) * 1000:.1f} ms (target < 50 ms)")
    try:
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} (other processes inflate stalls)")
    except OSError:
        pass
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
