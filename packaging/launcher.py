"""PyInstaller entry script: the same entry point as the installed `splice-desktop` command."""

from splice_desktop.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
