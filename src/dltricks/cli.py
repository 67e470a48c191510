"""The ``dltricks`` command line (placeholder until the lab exists)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from dltricks import __version__

    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        print(f"dltricks {__version__}")
        return 0
    print("dltricks: no commands yet", file=sys.stderr)
    return 2
