"""``python -m splice_desktop`` / ``splice-desktop``: the window by default, the CLI with a subcommand.

Only the CLI's own flags (--help, --version, -q) or a known subcommand route to the CLI; anything else
(no arguments, Qt-style options such as ``-style fusion``, or image paths to open) goes to the GUI. The GUI is
imported lazily so batch use never loads Qt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

CLI_FLAGS = ("-h", "--help", "--version", "-q", "--quiet")


def wants_cli(args: Sequence[str]) -> bool:
    """True when the arguments are meant for the command-line interface rather than the window."""
    from splice_desktop.cli import SUBCOMMANDS

    for arg in args:
        if arg in SUBCOMMANDS or arg in CLI_FLAGS:
            return True
        if arg.startswith("-"):
            continue  # a Qt option (or its value follows); keep looking for a subcommand
        if not Path(arg).exists():
            # Neither a subcommand nor a file to open: let the CLI print a usage error listing commands,
            # unless it is the value of a preceding Qt option (e.g. "-style fusion").
            prev = args[args.index(arg) - 1] if args.index(arg) > 0 else ""
            if not prev.startswith("-"):
                return True
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_cli(args):
        from splice_desktop import cli

        return cli.main(args)
    from splice_desktop.gui.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
