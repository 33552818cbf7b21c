"""Time to a visible main window, against a bare script that only shows an empty QMainWindow.

Both are launched the same way, alternately, in fresh interpreter subprocesses; the clock runs from spawning the
process until it prints SHOWN on its window's first paint (an event filter; the process then exits at once).
So both include interpreter start and the PySide6 import, and the ratio shows what the app adds on top.
Target (issue 6): ratio of medians <= 1.5.

    .venv/bin/python benchmarks/startup.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _timing import fresh_app_environment

ROOT = Path(__file__).resolve().parents[1]

BARE = r"""
import os, sys
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QMainWindow
class F(QObject):
    def eventFilter(self, o, e):
        if e.type() == QEvent.Type.Paint:
            import time
            print(f"SHOWN {time.process_time():.4f}", flush=True); os._exit(0)
        return False
app = QApplication([sys.argv[0]])
w = QMainWindow(); w.setWindowTitle("bare"); w.resize(1280, 800)
f = F(w); w.installEventFilter(f); w.show()
app.exec()
"""

APP = r"""
import sys
from splice_desktop.gui.app import run
sys.exit(run(["--startup-probe", "--tiny"]))
"""


def measure(code: str, env: dict[str, str], timeout: float = 120.0, retries: int = 2) -> dict[str, float]:
    """Seconds from spawn to each marker line (SHOWN, and PANELS for the app); retried if a run dies early."""
    for attempt in range(retries + 1):
        try:
            return _measure_once(code, env, timeout)
        except RuntimeError as exc:
            if attempt == retries:
                raise
            print(f"(retrying: {exc})", file=sys.stderr)
    raise AssertionError("unreachable")


def _measure_once(code: str, env: dict[str, str], timeout: float) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=None if os.environ.get("STARTUP_DEBUG") else subprocess.DEVNULL,
                            text=True, env=env, cwd=str(ROOT))
    assert proc.stdout is not None
    marks: dict[str, float] = {}
    for line in proc.stdout:
        parts = line.split()
        if parts and parts[0] in ("SHOWN", "PANELS"):
            marks[parts[0]] = time.perf_counter() - t0
            if parts[0] == "SHOWN" and len(parts) > 1:
                marks["CPU"] = float(parts[1])
        if time.perf_counter() - t0 > timeout:
            break
    rc = proc.wait(timeout=30)
    if "SHOWN" not in marks:
        raise RuntimeError(f"the window was never shown (no SHOWN line, exit code {rc})")
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    tmp = fresh_app_environment("splice-startup-")  # temp cache, offline hub, offscreen unless a display is set
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")  # fresh QSettings: no restored geometry or saved model
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # An installed app has byte-compiled modules (pip compiles them). Some CI shells set PYTHONDONTWRITEBYTECODE,
    # which would make every run recompile the app's sources; cache bytecode in a temp folder instead, so the
    # checkout stays clean and the warm-up run below fills the cache for both scripts.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")

    measure(BARE, env)  # warm the OS file cache for both before timing
    measure(APP, env)
    bare, app, panels, bare_cpu, app_cpu = [], [], [], [], []
    for _ in range(args.reps):
        m = measure(BARE, env)
        bare.append(m["SHOWN"])
        bare_cpu.append(m["CPU"])
        m = measure(APP, env)
        app.append(m["SHOWN"])
        app_cpu.append(m["CPU"])
        panels.append(m.get("PANELS", float("nan")))
    mb, ma, mp = statistics.median(bare), statistics.median(app), statistics.median(panels)
    cb, ca = statistics.median(bare_cpu), statistics.median(app_cpu)
    print(f"platform: {env.get('QT_QPA_PLATFORM', 'default')}, reps: {args.reps}")
    print(f"bare QMainWindow shown : median {mb * 1000:7.1f} ms  (min {min(bare) * 1000:.1f}, max {max(bare) * 1000:.1f})")
    print(f"SpLiCE Desktop shown   : median {ma * 1000:7.1f} ms  (min {min(app) * 1000:.1f}, max {max(app) * 1000:.1f})")
    print(f"ratio (app / bare)     : {ma / mb:.2f}  (target <= 1.5)")
    print(f"CPU time to shown      : bare {cb * 1000:.0f} ms, app {ca * 1000:.0f} ms, ratio {ca / cb:.2f} "
          "(process CPU seconds: insensitive to other load on the machine)")
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    except OSError:
        pass
    print(f"app panels built       : median {mp * 1000:7.1f} ms  (analysis + CLIP-InterpreT panels, after the "
          "first paint; the model loads in the background meanwhile)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
