"""Command line: ``fastsoftmax info`` and ``fastsoftmax demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _demo(_: argparse.Namespace) -> int:
    import numpy as np

    import fastsoftmax as fs

    print(f"fastsoftmax {fs.__version__}: backends {', '.join(fs.backends())}")
    logits = np.array([2.0, 1.0, 0.1])
    for backend in fs.backends():
        for temperature in (1.0, 0.5, 2.0):
            p = fs.softmax(logits, temperature=temperature, backend=backend)
            print(f"  {backend:>6} softmax({logits.tolist()}, T={temperature}) = {np.round(p, 3)}")
    return 0


def _info(_: argparse.Namespace) -> int:
    import fastsoftmax as fs

    print(json.dumps(fs.info(), indent=2, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastsoftmax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, backends, SIMD level, threads").set_defaults(
        run=_info
    )
    commands.add_parser("demo", help="softmax of [2.0, 1.0, 0.1] on every backend").set_defaults(
        run=_demo
    )
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
