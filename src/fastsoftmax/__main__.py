"""Command line: ``fastsoftmax info``, ``demo``, ``bench``, ``accuracy``, ``viz`` and ``show``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ._viz.cli import add_commands as add_viz_commands


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


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _check_plot_available() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install matplotlib (or the extra: fastsoftmax[bench])"
    return None


def _write_page(text: str, output: str | None) -> None:
    """A markdown page to ``output`` (its directory made if needed), or to stdout."""
    if output is None:
        sys.stdout.write(text)
        return
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {output}")


def _bench(args: argparse.Namespace) -> int:
    from . import _bench as bench

    if args.compare:
        try:
            a, b = (bench.load_json(path) for path in args.compare)
        except (OSError, ValueError) as error:
            print(f"fastsoftmax bench: {error}", file=sys.stderr)
            return 2
        print(bench.render_compare(a, b, names=("A", "B")))
        return 0
    if args.show:
        if args.plot and len(args.show) > 1:
            print(
                "fastsoftmax bench: --plot redraws one run: give one --show file", file=sys.stderr
            )
            return 2
        try:
            documents = [bench.load_json(path) for path in args.show]
        except (OSError, ValueError) as error:
            print(f"fastsoftmax bench: {error}", file=sys.stderr)
            return 2
        if args.markdown or args.output:
            _write_page(bench.render_page(documents, args.show, args.output), args.output)
        else:
            print("\n\n".join(bench.render(document) for document in documents))
        if args.plot:
            problem = _check_plot_available()
            if problem:
                print(f"fastsoftmax bench: {problem}", file=sys.stderr)
                return 2
            bench.plot(documents[0], args.plot)
            print(f"wrote {args.plot}")
        return 0
    if args.output:
        print(
            "fastsoftmax bench: --output writes the page of saved runs: use --show", file=sys.stderr
        )
        return 2
    if args.plot:
        problem = _check_plot_available()
        if problem:
            print(f"fastsoftmax bench: {problem}", file=sys.stderr)
            return 2
    if args.threads < 1:
        print("fastsoftmax bench: --threads must be at least 1", file=sys.stderr)
        return 2
    functions = bench.FUNCTIONS if args.function == "all" else (args.function,)
    cases = bench.select_cases(functions, args.dtype, args.quick, args.case or ())
    if not cases:
        print("fastsoftmax bench: no case matches", file=sys.stderr)
        return 2
    settings = bench.Settings.quick() if args.quick else bench.Settings()
    if args.repeats is not None:
        settings.repeats = max(1, args.repeats)
    if args.min_time is not None:
        settings.min_sample_time = args.min_time
        settings.warmup_time = min(settings.warmup_time, 5 * args.min_time)
    sweep = []
    if args.plot:
        total = args.sweep_total or bench.SWEEP_TOTAL
        sweep = bench.sweep_cases(args.quick or total != bench.SWEEP_TOTAL, args.dtype, total)
    try:
        document = bench.run(
            cases,
            implementations=_names(args.only),
            threads=args.threads,
            settings=settings,
            progress=not args.no_progress,
            sweep=sweep,
            pin=not args.no_pin,
            command=["fastsoftmax", *(args.argv or [])],
        )
    except ValueError as error:
        print(f"fastsoftmax bench: {error}", file=sys.stderr)
        return 2
    print(bench.render(document, markdown=args.markdown))
    if args.json:
        bench.write_json(document, args.json)
        print(f"\nwrote {args.json}")
    if args.plot:
        bench.plot(document, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    from . import _accuracy as accuracy
    from . import _bench as bench

    if args.show:
        try:
            documents = [bench.load_json(path, accuracy.SCHEMA) for path in args.show]
        except (OSError, ValueError) as error:
            print(f"fastsoftmax accuracy: {error}", file=sys.stderr)
            return 2
        if args.markdown or args.output:
            _write_page(accuracy.render_page(documents, args.show, args.output), args.output)
        else:
            print("\n\n".join(accuracy.render(document) for document in documents))
        return 0
    if args.output:
        print(
            "fastsoftmax accuracy: --output writes the page of saved runs: use --show",
            file=sys.stderr,
        )
        return 2
    dtypes = accuracy.DTYPES if args.dtype is None else (args.dtype,)
    functions = accuracy.FUNCTIONS if args.function == "all" else (args.function,)
    try:
        document = accuracy.run(
            quick=args.quick,
            dtypes=dtypes,
            functions=functions,
            names=_names(args.only),
            progress=not args.no_progress,
            command=["fastsoftmax", *(args.argv or [])],
        )
    except ValueError as error:
        print(f"fastsoftmax accuracy: {error}", file=sys.stderr)
        return 2
    print(accuracy.render(document, markdown=args.markdown))
    if args.json:
        bench.write_json(document, args.json)
        print(f"\nwrote {args.json}")
    return 0


def _add_saved_run_options(parser: argparse.ArgumentParser, show_help: str, page: str) -> None:
    """--show, --markdown and --output: the options that render saved runs."""
    parser.add_argument("--show", nargs="+", metavar="PATH", help=show_help)
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print markdown tables (with --show: the whole page of the saved runs)",
    )
    parser.add_argument(
        "--output",
        metavar="PATH.md",
        help=f"with --show: write the markdown page of the saved runs (docs/{page}.md)",
    )


def _add_bench(commands: argparse._SubParsersAction) -> None:
    from ._bench import FUNCTIONS

    parser = commands.add_parser(
        "bench",
        help="time every backend and installed peer (scipy, torch, jax, onnxruntime) on the "
        "standard cases",
        description="Time softmax on every backend and installed peer (scipy, PyTorch, JAX, "
        "ONNX Runtime), "
        "interleaved in one run, and print time per call, GB/s, the fraction of this "
        "machine's copy bandwidth, and the speedup over the NumPy reference.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer cases and repetitions (<30 s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="threads for fastsoftmax, PyTorch and ONNX Runtime; the process is pinned to N "
        "CPUs (default 1)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="run every case in this dtype (default: the standard mix)",
    )
    parser.add_argument(
        "--function",
        choices=(*FUNCTIONS, "all"),
        default="softmax",
        help="the function to time (default softmax; all: the three)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated, from: cpp, cpp-out, numba, numpy, scipy, torch, jax, "
        "onnxruntime, onnxruntime-io (default: all available)",
    )
    parser.add_argument(
        "--case",
        action="append",
        metavar="TEXT",
        help="only cases whose label contains TEXT (e.g. 1024x1024); repeatable",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write machine, versions, settings and every sample"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        help="also sweep row lengths and plot GB/s against them (matplotlib)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="show two saved runs side by side (measures nothing)",
    )
    _add_saved_run_options(
        parser, "print saved runs again (with --plot: redraw the plot of one run)", "benchmarks"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to CPUs")
    parser.add_argument("--repeats", type=int, help="repetitions per case (default 15, quick 5)")
    parser.add_argument(
        "--min-time",
        type=float,
        metavar="SECONDS",
        help="minimum duration of one timed block (default 0.02, quick 0.004)",
    )
    # For tests: a tiny plot sweep of SWEEP_TOTAL elements.
    parser.add_argument("--sweep-total", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(run=_bench)


def _add_accuracy(commands: argparse._SubParsersAction) -> None:
    from ._accuracy import DTYPES, FUNCTIONS

    parser = commands.add_parser(
        "accuracy",
        help="max error in ULP of every backend and peer against a high-precision reference",
        description="Maximum error (ULP, relative, fraction of the accuracy bound) of every "
        "backend, every SIMD level and installed peer against float64 / long double, over "
        "random and adversarial rows; then the compiled exp alone over its input range.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a few seconds)")
    parser.add_argument("--dtype", choices=DTYPES, help="only this dtype (default: all)")
    parser.add_argument(
        "--function", choices=(*FUNCTIONS, "all"), default="all", help="default: all three"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated, from: cpp, numba, numpy, scipy, torch, jax (default: all available)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    _add_saved_run_options(parser, "print saved runs again", "accuracy")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.set_defaults(run=_accuracy)


def main(argv: Sequence[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastsoftmax", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastsoftmax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, backends, SIMD level, threads").set_defaults(
        run=_info
    )
    commands.add_parser("demo", help="softmax of [2.0, 1.0, 0.1] on every backend").set_defaults(
        run=_demo
    )
    _add_bench(commands)
    _add_accuracy(commands)
    add_viz_commands(commands)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.run(args))
    except BrokenPipeError:  # e.g. `fastsoftmax bench --compare a b | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
