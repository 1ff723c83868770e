"""The ``viz`` and ``show`` subcommands of ``fastsoftmax``.

``add_commands(subparsers)`` registers both on the subparsers object of the
``fastsoftmax`` command line; each sets ``run`` (a function of the parsed
arguments returning the exit code). ``python -m fastsoftmax._viz`` runs them
on their own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

_EIGHTHS = " ▏▎▍▌▋▊▉█"
_SHOW_MAX_ROWS = 100


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0: a free one), not {port}")
    return port


def add_commands(subparsers: Any) -> None:
    """Register ``viz`` and ``show`` on an argparse subparsers object."""
    viz = subparsers.add_parser(
        "viz",
        help="open the Softmax Visualizer, an interactive page computed by fastsoftmax",
        description="Start the Softmax Visualizer: a local web server on 127.0.0.1 that "
        "serves one interactive page and computes with fastsoftmax's backends. Prints the "
        "URL and opens it in the browser; Ctrl-C stops it.",
    )
    viz.add_argument(
        "--port", type=_port, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    viz.add_argument("--no-browser", action="store_true", help="do not open a browser")
    viz.add_argument("--verbose", action="store_true", help="log every request to stderr")
    viz.set_defaults(run=run_viz)

    show = subparsers.add_parser(
        "show",
        help="softmax of some logits as a bar chart in the terminal",
        description="Print the softmax of the given logits as a bar chart: logits, "
        "exp(x - max), probabilities (argmax marked), entropy, and the naive exp(x) / sum "
        "beside it. Example: fastsoftmax show 2 1 0.1 --temperature 0.5",
        epilog="A logit like -1e3 is read as an option: put -- before the logits.",
    )
    show.add_argument(
        "logits", nargs="+", help="numbers (2 1 0.1), or one typed list ('[2, 1, 0.1]')"
    )
    show.add_argument(
        "-t", "--temperature", default="1.0", help="divide the logits by T (default 1)"
    )
    show.add_argument("--backend", help="cpp, numba or numpy (default: the best available)")
    show.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    show.add_argument(
        "--target",
        type=int,
        help="also show the cross-entropy of this class, and softmax applied twice",
    )
    show.add_argument("--width", type=int, default=40, help="bar width in characters (default 40)")
    show.set_defaults(run=run_show)


def run_viz(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args.port, open_browser=not args.no_browser, verbose=args.verbose)


def fmt(value: float) -> str:
    """A probability-like number as the page shows it: 3 decimals, or 3
    significant digits in e-notation when smaller than 0.001."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if value == 0 or abs(value) >= 0.001:
        return f"{value:.3f}"
    return f"{value:.2e}"


def _bar(fraction: float, width: int, blocks: str) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return blocks[-1] * full + (blocks[part] if part else "")


def _blocks(stream: TextIO) -> str:
    try:
        _EIGHTHS.encode(getattr(stream, "encoding", None) or "ascii")
        return _EIGHTHS
    except (UnicodeEncodeError, LookupError):
        return "        #"  # eighths round to nothing or a whole '#'


def render_show(result: dict[str, Any], width: int = 40, stream: TextIO | None = None) -> str:
    """The terminal chart for a result of ``compute.analyze``."""
    blocks = _blocks(stream or sys.stdout)
    logits = result["logits"].tolist()
    p = result["probabilities"].tolist()
    stable = result["stable"]["exp"].tolist()
    n, t = result["n"], result["temperature"]
    shown = logits if n <= 8 else [*logits[:8], "..."]
    lines = [
        f"softmax({_list(shown)} / T) with T = {t:g}: backend {result['backend']}, "
        f"{result['dtype']}",
        "",
        f"{'class':>5}  {'logit':>10}  {'exp((x-max)/T)':>14}  {'probability':>11}",
    ]
    rows = min(n, _SHOW_MAX_ROWS)
    for i in range(rows):
        mark = "  <- argmax" if i == result["argmax"] else ""
        lines.append(
            f"{i:>5}  {logits[i]:>10.6g}  {fmt(stable[i]):>14}  {fmt(p[i]):>11}  "
            f"{_bar(p[i], width, blocks)}{mark}"
        )
    if rows < n:
        lines.append(f"  ... and {n - rows:,} more classes (the sums cover them all)")
    lines.append(
        f"{'sum':>5}  {'':>10}  {fmt(result['stable']['sum']):>14}  {fmt(result['sum']):>11}"
    )
    lines.append("")
    lines.append(
        f"entropy {result['entropy']:.3f} nats = {result['entropy_bits']:.3f} bits "
        f"(0 = certain, log {n} = {result['max_entropy']:.3f} nats = uniform)"
    )
    naive = result["naive"]
    naive_p = naive["probabilities"].tolist()
    if naive["ok"]:
        lines.append(f"naive exp(x/T) / sum: {_list([fmt(v) for v in naive_p[:8]])}: no overflow")
    else:
        lines.append(
            f"naive exp(x/T) / sum: {_list([fmt(v) for v in naive_p[:8]])}: exp overflows "
            f"past x/T = {naive['overflow_threshold']:.2f} ({result['dtype']}); the stable "
            "form exp((x - max)/T) / sum never does"
        )
    ce = result["cross_entropy"]
    if result.get("show_target"):
        lines.append(
            f"cross-entropy of class {ce['target']}: {ce['correct']:.4f} from the logits; "
            f"{ce['applied_twice']:.4f} with softmax applied twice "
            f"(never below {ce['applied_twice_floor']:.4f})"
        )
        lines.append(f"  {ce['warning']}")
    return "\n".join(line.rstrip() for line in lines)


def _list(items: list[Any]) -> str:
    return "[" + ", ".join(i if isinstance(i, str) else f"{i:g}" for i in items) + "]"


def run_show(args: argparse.Namespace) -> int:
    from . import compute

    text = " ".join(args.logits)
    if args.width < 1 or args.width > 500:
        print("fastsoftmax show: --width must be in 1..500", file=sys.stderr)
        return 2
    try:
        result = compute.analyze(
            text, args.temperature, args.backend, args.target, args.dtype, curve=False
        )
    except compute.InputError as error:
        print(f"fastsoftmax show: {error}", file=sys.stderr)
        return 2
    result["show_target"] = args.target is not None
    print(render_show(result, args.width, sys.stdout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsoftmax._viz viz|show ...``"""
    parser = argparse.ArgumentParser(prog="fastsoftmax")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(args.run(args))
