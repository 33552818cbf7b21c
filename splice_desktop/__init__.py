"""SpLiCE Desktop: see what CLIP sees.

The package is layered: ``splice_desktop.core`` holds the science and never imports Qt;
``splice_desktop.gui`` holds the window and calls into core; ``splice_desktop.cli`` is the batch front end.
"""

import os

# numpy's OpenBLAS keeps its worker threads spinning for ~2^28 cycles after every multi-threaded call. The solver
# mixes small numpy products with torch's float16 passes (and the encoder runs torch next to numpy), so on a
# 2-core machine those spinning threads steal the cores from torch's threads: cold solves measured 4-7 ms instead
# of ~2 ms, one call in five. 2^4 cycles lets them sleep at once. Only effective before numpy is first imported
# (true for ``python -m splice_desktop``); a user's own value wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
