#!/usr/bin/env python
"""sageattention's distribution CLI: conda packages from recipe/ + variants.yaml, wheels and a pip index
repackaged from the same .conda files. `python scripts/build.py SUBCOMMAND --help` for each."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from buildtools import BuildToolError, channel, cibuildwheel, conda, docker, index, matrix, test, wheels  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for module in (matrix, conda, wheels, index, test, channel, cibuildwheel, docker):
        module.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BuildToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
