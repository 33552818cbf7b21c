"""Tiny shared timing helper for the benchmark scripts (stdlib only at import, so any benchmark can import it;
the Qt helpers import PySide6 when used).

Why median and p95: on a shared laptop-class CPU single timings are noisy; the median is the typical cost and the
95th percentile is what a user feels on a bad frame (e.g. a slider drag). Compare two things by timing them in the
same run, interleaved when possible (``measure_interleaved``), so background load hits both sides alike.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sequence."""
    if not samples:
        raise ValueError("percentile of no samples")
    xs = sorted(samples)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Timings in seconds."""

    samples: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95.0)

    @property
    def min(self) -> float:
        return min(self.samples)

    def ms(self) -> str:
        """'median / p95 ms (n=..)' for tables."""
        return f"{fmt_ms(self.median)} / {fmt_ms(self.p95)} (n={self.n})"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.0f} us"


def measure(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, budget_s: float | None = None) -> Stats:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeat`` times timed (stopping early past ``budget_s``)."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(out) >= 1:
            break
    return Stats(tuple(out))


def measure_interleaved(
    fns: dict[str, Callable[[], object]], repeat: int = 5, warmup: int = 1, budget_s: float | None = None
) -> dict[str, Stats]:
    """Time several functions round-robin (a, b, c, a, b, c, ...) so slow phases of the machine hit all of them."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {name: Stats(tuple(v)) for name, v in out.items()}


def machine_summary() -> str:
    """CPU model, logical cores, OS and Python, for the record next to the numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
        load_s = f", load avg {load:.1f}"
    except (OSError, AttributeError):
        load_s = ""
    return f"{cpu}, {os.cpu_count()} logical cores{load_s}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def fresh_app_environment(prefix: str) -> Path:
    """A new temp folder whose ``cache`` the app under test uses, so every image is really encoded; offline hub;
    Qt offscreen unless a display is set. Call before anything imports Qt or the app."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["SPLICE_DESKTOP_CACHE"] = str(tmp / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return tmp


def pump_events(app, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run ``app``'s event loop for up to ``seconds`` (1 ms steps), returning early once ``until()`` is true.
    Returns whether it was (``until`` None: False)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if until is not None and until():
            return True
        app.processEvents()
        time.sleep(0.001)
    return until is not None and bool(until())


class StallProbe:
    """Records the gaps between ticks of a 5 ms GUI-thread timer."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.gaps = []
        self.times: list[float] = []
        self._last = self.t0 = time.perf_counter()
        self.timer.start()

    def largest(self, n: int = 5) -> list[tuple[float, float, float]]:
        """The n largest stalls as (stall seconds, start, end) in perf_counter time."""
        order = sorted(range(len(self.gaps)), key=lambda i: -self.gaps[i])[:n]
        return [(self.gaps[i] - self.interval, self.times[i] - self.gaps[i], self.times[i]) for i in order]

    def stop(self) -> list[float]:
        self.timer.stop()
        return [max(0.0, g - self.interval) for g in self.gaps]

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self.times.append(now)
        self._last = now
