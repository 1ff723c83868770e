"""Accuracy: ``fastsoftmax accuracy``.

Every backend (the compiled one at every SIMD level this CPU runs), and scipy,
PyTorch and JAX where installed, against a reference in higher precision: float64
for float32 and float16 input, ``np.longdouble`` for float64 where it has more
digits (x86), else mpmath on the short rows. Inputs: random rows of many lengths
and adversarial ones (huge offsets, outputs down to the subnormals, ties, -inf
entries, a 4,000,000-element row, ...). Reported per function, dtype and
implementation: the maximum error in ULP of the output dtype, the maximum relative
error (over outputs in the normal range) and the largest fraction of the accuracy
bound (README, "Accuracy contract") used, with the input set where the worst ULP
error was found. Then the compiled ``exp`` alone, over a sweep of its input range,
per SIMD level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _bench, _reference

FUNCTIONS = ("softmax", "log_softmax", "logsumexp")
DTYPES = ("float32", "float64", "float16")
SCHEMA = "fastsoftmax-accuracy/1"


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _longdouble_is_wider() -> bool:
    return bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)


def _mpmath_available() -> bool:
    try:
        import mpmath  # noqa: F401
    except ImportError:
        return False
    return True


def reference_kind(dtype: np.dtype) -> str | None:
    """Which high-precision reference is used for ``dtype``, None when there is none."""
    if _compute_dtype(dtype) == np.float32:
        return "float64"
    if _longdouble_is_wider():
        return "long double"
    return "mpmath" if _mpmath_available() else None


def input_sets(dtype: np.dtype, quick: bool) -> list[tuple[str, np.ndarray]]:
    """(name, 2-D array) pairs; every function works along the last axis."""
    rng = np.random.default_rng(20240611)
    dtype = np.dtype(dtype)
    finfo = np.finfo(dtype)
    budget = 20_000 if quick else 400_000  # elements per random length
    lengths = (1, 2, 3, 7, 15, 16, 17, 33, 100, 1000, 4097, 65536)
    sets: list[tuple[str, np.ndarray]] = []

    def add(name: str, x: Any) -> None:
        sets.append((name, np.asarray(x).astype(dtype)))

    for n in lengths:
        rows = max(1, min(256, budget // n))
        add(f"N(0,3) n={n}", rng.standard_normal((rows, n)) * 3)
    add("N(0,30) n=1000", rng.standard_normal((16 if quick else 128, 1000)) * 30)
    # x + 1e4 in float32: the max subtraction must not lose the small differences.
    offset = 1e4 if dtype != np.float16 else 1e3
    add("N(0,3) + offset", rng.standard_normal((16, 1000)) * 3 + offset)
    big = float(finfo.max) / 4
    add("huge logits", rng.uniform(-big, big, (16, 64)))
    # Outputs down to the subnormal range and below it.
    deep = {np.dtype(np.float16): 20.0, np.dtype(np.float32): 110.0}.get(dtype, 760.0)
    under = rng.uniform(-deep, 0, (16, 1000))
    under[:, 0] = 0
    add("down to subnormal", under)
    add("all equal", np.full((8, 1000), 1.5))
    two_max = rng.standard_normal((8, 1000)) * 3
    two_max[:, :2] = 20
    add("two maxima", two_max)
    dominant = np.full((8, 1000), -30.0)
    dominant[:, 0] = 0
    add("one dominant", dominant)
    # Every other term just under half an ULP of the max's term 1: each one added to an
    # accumulator that holds the 1 is rounded away entirely.
    half_ulp = np.full((2, 1024), math.log(0.45 * float(np.finfo(_compute_dtype(dtype)).eps)))
    half_ulp[:, 0] = 0
    add("one at 0, rest at eps/2", half_ulp)
    near = 1 + np.arange(1000) * float(finfo.eps)
    add("max - k eps", np.tile(near, (4, 1)))
    with_inf = rng.standard_normal((16, 1000)) * 3
    with_inf[rng.random(with_inf.shape) < 0.3] = -np.inf
    add("-inf entries", with_inf)
    # d on the range-reduction boundaries of exp: multiples of ln2/2, a little either side.
    k = np.arange(1, 200)
    edges = -np.concatenate([k * math.log(2) / 2, k * math.log(2) / 2 * (1 + 1e-7)])
    add("exp reduction edges", np.concatenate([[0.0], edges])[None, :])
    long_n = 262_144 if quick else 4_000_000
    add(f"long row n={long_n:,}", rng.standard_normal((1, long_n)) * 3)
    return sets


def _mp_reference(function: str, x: np.ndarray) -> np.ndarray:
    """float64 input without long double: mpmath, row by row (slow; short rows only)."""
    import mpmath

    mpmath.mp.dps = 40
    out = []
    for row in x:
        values = [mpmath.mpf(float(v)) for v in row]
        finite = [v for v in values if mpmath.isfinite(v)]
        m = max(finite) if finite else mpmath.mpf(0)
        terms = [mpmath.exp(v - m) if mpmath.isfinite(v) else mpmath.mpf(0) for v in values]
        total = mpmath.fsum(terms)
        if function == "softmax":
            out.append([float(t / total) for t in terms])
        elif function == "log_softmax":
            out.append(
                [
                    float(v - m - mpmath.log(total)) if mpmath.isfinite(v) else -math.inf
                    for v in values
                ]
            )
        else:
            out.append(float(m + mpmath.log(total)))
    return np.array(out)


def reference(function: str, x: np.ndarray) -> np.ndarray | None:
    kind = reference_kind(x.dtype)
    if kind is None:
        return None
    if kind == "mpmath":
        if x.shape[-1] > 5000 or not np.isfinite(x).all() or np.abs(x).max() > 1e300:
            return None
        return _mp_reference(function, x)
    high = np.longdouble if kind == "long double" else np.float64
    xh = x.astype(high)[None]
    if function == "logsumexp":
        return _reference.logsumexp_values(xh, None, 1.0)[0]
    return _reference.softmax_values(xh, None, 1.0, log=function == "log_softmax")[0]


@dataclass
class Implementation:
    name: str
    kind: str
    call: Callable[[str, np.ndarray], np.ndarray]
    level: str | None = None


def implementations(
    names: Sequence[str] | None = None, quick: bool = False
) -> tuple[list[Implementation], dict]:
    """Our backends (``cpp`` once per SIMD level) and the installed peers (without JAX
    in a quick run unless named: it compiles once for every shape, ~0.2 s each)."""
    import fastsoftmax as fs

    found: list[Implementation] = []
    missing: dict[str, str] = {}
    wanted = list(names) if names is not None else [*_bench.BACKENDS, *_bench.PEERS]
    if quick and names is None:
        wanted.remove("jax")
        missing["jax"] = "left out of --quick (compiles for every shape); name it in --only"
    for name in wanted:
        if name in _bench.BACKENDS:
            if name not in fs.backends():
                missing[name] = "backend not available here"
                continue

            # The default backend as users call it (without backend=: its own path).
            def ours(function: str, x: np.ndarray, name: str = name) -> np.ndarray:
                return _bench._as_users_call(name, getattr(fs, function), x, -1)()

            levels = fs.info()["simd_levels"] if name == "cpp" else [None]
            for level in levels:
                label = f"cpp {level}" if level else name
                found.append(Implementation(label, "backend", ours, level))
        elif name in _bench.PEERS:
            try:
                found.append(_peer(name))
            except Exception as error:
                missing[name] = f"not installed ({type(error).__name__})"
        else:
            raise ValueError(f"unknown implementation {name!r}")
    return found, missing


def _peer(name: str) -> Implementation:
    with _bench.warnings_quiet():
        if name == "scipy":
            import scipy.special

            def call(function: str, x: np.ndarray) -> np.ndarray:
                return np.asarray(getattr(scipy.special, function)(x, axis=-1))

        elif name == "torch":
            import torch

            def call(function: str, x: np.ndarray) -> np.ndarray:
                return getattr(torch, function)(torch.from_numpy(x), -1).numpy()

        else:
            import jax

            jax.config.update("jax_enable_x64", True)
            jitted = {f: jax.jit(getattr(jax.nn, f), static_argnames="axis") for f in FUNCTIONS}

            def call(function: str, x: np.ndarray) -> np.ndarray:
                return np.asarray(jitted[function](x, axis=-1))

    return Implementation(name, "peer", call)


class _Worst:
    """The running maxima of one (function, dtype, implementation)."""

    def __init__(self) -> None:
        self.ulp = 0.0
        self.ulp_input = ""
        self.relative = 0.0
        self.of_bound = 0.0
        self.bound_input = ""
        self.special_mismatches = 0
        self.values = 0
        self.error = ""

    def record(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        return {
            "max_ulp": self.ulp,
            "max_ulp_input": self.ulp_input,
            "max_relative_error": self.relative,
            "max_of_spec_bound": self.of_bound,
            "max_of_spec_bound_input": self.bound_input,
            "special_value_mismatches": self.special_mismatches,
            "values": self.values,
        }


def _spec_bound(function: str, x: np.ndarray, ref: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    """The bound of README, "Accuracy contract", for each output (float16: plus its
    own rounding)."""
    work = _compute_dtype(np.dtype(out_dtype))
    eps, tiny = float(np.finfo(work).eps), float(np.finfo(work).tiny)
    refd = np.abs(ref.astype(np.float64))
    if function == "softmax":
        xd = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            spread = np.abs(xd - np.max(xd, axis=-1, keepdims=True))
        spread = np.where(np.isfinite(spread), spread, 0)
        bound = 4 * eps * (1 + spread + math.log(x.shape[-1])) * refd + tiny
    else:
        bound = 4 * eps * (1 + refd) + tiny
    if np.dtype(out_dtype).itemsize == 2:
        bound = (
            bound
            + float(np.finfo(np.float16).eps) * refd
            + float(np.finfo(np.float16).smallest_subnormal)
        )
    return bound


def compare(
    worst: _Worst, name: str, x: np.ndarray, y: np.ndarray, ref: np.ndarray, function: str
) -> None:
    dtype = x.dtype
    y = np.asarray(y)
    if y.dtype != dtype:  # a peer that answers in another dtype is measured in ours
        y = y.astype(dtype)
    yh = y.astype(ref.dtype)
    special = ~np.isfinite(ref)
    same = (np.isnan(yh) == np.isnan(ref)) & ((yh == ref) | ~np.isinf(ref))
    worst.special_mismatches += int((~same).sum())
    finite = ~special & np.isfinite(yh)
    worst.special_mismatches += int((~special & ~np.isfinite(yh)).sum())
    if not finite.any():
        return
    err = np.abs(yh[finite] - ref[finite]).astype(np.float64)
    rounded = ref[finite].astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(np.float64)
    ulp = err / spacing
    refd = np.abs(ref[finite].astype(np.float64))
    normal = refd >= float(np.finfo(dtype).tiny)
    relative = err[normal] / refd[normal] if normal.any() else np.zeros(1)
    bound = _spec_bound(function, x, ref, dtype)[finite]
    of_bound = err / bound
    worst.values += int(finite.sum())
    if ulp.max() > worst.ulp:
        worst.ulp, worst.ulp_input = float(ulp.max()), name
    worst.relative = max(worst.relative, float(relative.max()))
    if of_bound.max() > worst.of_bound:
        worst.of_bound, worst.bound_input = float(of_bound.max()), name


def measure(
    functions: Sequence[str],
    dtypes: Sequence[str],
    impls: Sequence[Implementation],
    quick: bool,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per (function, dtype, implementation)."""
    from . import _backends

    cpp = _backends._modules.get("cpp")
    previous_level = cpp.simd_level() if cpp is not None else None
    records = []
    try:
        for dtype_name in dtypes:
            dtype = np.dtype(dtype_name)
            sets = input_sets(dtype, quick)
            for function in functions:
                if progress:
                    progress(f"{function} {dtype_name}")
                worst = {impl.name: _Worst() for impl in impls}
                skipped = []
                for set_name, x in sets:
                    ref = reference(function, x)
                    if ref is None:
                        skipped.append(set_name)
                        continue
                    for impl in impls:
                        w = worst[impl.name]
                        if w.error:
                            continue
                        if impl.level is not None:
                            cpp.set_simd_level(impl.level)
                        try:
                            with _bench.warnings_quiet(), np.errstate(all="ignore"):
                                y = impl.call(function, x)
                            compare(w, set_name, x, y, ref, function)
                        except Exception as error:
                            w.error = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
                for impl in impls:
                    records.append(
                        {
                            "function": function,
                            "dtype": dtype_name,
                            "implementation": impl.name,
                            "kind": impl.kind,
                            "reference": reference_kind(dtype),
                            "inputs_without_reference": skipped,
                            **worst[impl.name].record(),
                        }
                    )
    finally:
        if cpp is not None and previous_level is not None:
            cpp.set_simd_level(previous_level)
    return records


def _ulp_error(got: np.ndarray, exact: np.ndarray, dtype: Any) -> np.ndarray:
    """|got - exact| in units of the spacing of dtype at the exact value (as tests/test_exp.py)."""
    rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(exact.dtype)
    return np.abs(got.astype(exact.dtype) - exact) / spacing


def exp_sweep(quick: bool) -> list[dict[str, Any]]:
    """The compiled exp for d <= 0 alone, per SIMD level, and NumPy's exp at the same points."""
    from . import _backends

    points32 = 200_001 if quick else 4_000_001
    d32 = -np.linspace(0, 104, points32, dtype=np.float32)
    d32 = np.concatenate([d32, -(np.float32(2.0) ** -np.arange(1, 40, dtype=np.float32))])
    rng = np.random.default_rng(41)
    n64 = 50_000 if quick else 1_000_000
    d64 = np.concatenate(
        [
            -rng.uniform(0, 746, n64),
            -rng.uniform(0, 1, n64 // 10),
            -np.exp2(-np.arange(1.0, 60.0)),
            [-745.0, -708.4, -708.39],
        ]
    )
    sweeps = [
        (
            "float32",
            d32,
            np.float64,
            f"{points32:,} points evenly over [-104, 0], powers of 2 near 0",
        ),
    ]
    kind64 = "long double" if _longdouble_is_wider() else None
    if kind64:
        sweeps.append(
            (
                "float64",
                d64,
                np.longdouble,
                f"{n64:,} random in [-746, 0], {n64 // 10:,} in [-1, 0], edges",
            )
        )
    cpp = _backends._modules.get("cpp")
    levels = list(cpp.simd_levels()) if cpp is not None else []
    previous = cpp.simd_level() if cpp is not None else None
    records = []
    try:
        for dtype_name, d, high, description in sweeps:
            exact = np.exp(d.astype(high))
            contenders: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
            for level in levels:

                def kernel(values: np.ndarray, level: str = level) -> np.ndarray:
                    cpp.set_simd_level(level)
                    return cpp.exp_nonpositive(values)

                contenders.append((f"cpp {level}", kernel))
            contenders.append(("numpy np.exp", np.exp))
            for name, function in contenders:
                err = _ulp_error(function(d), exact, d.dtype)
                worst = int(np.argmax(err))
                records.append(
                    {
                        "implementation": name,
                        "dtype": dtype_name,
                        "points": int(d.size),
                        "inputs": description,
                        "reference": "float64" if high is np.float64 else "long double",
                        "max_ulp": float(err[worst]),
                        "max_ulp_at": float(d[worst]),
                        "correctly_rounded": float(np.mean(err <= 0.5)),
                    }
                )
    finally:
        if cpp is not None and previous is not None:
            cpp.set_simd_level(previous)
    if not kind64:
        records.append(
            {
                "implementation": "-",
                "dtype": "float64",
                "error": "long double is double here: no reference for the float64 sweep",
            }
        )
    return records


def run(
    quick: bool = False,
    dtypes: Sequence[str] = DTYPES,
    functions: Sequence[str] = FUNCTIONS,
    names: Sequence[str] | None = None,
    progress: bool = True,
    command: Sequence[str] = (),
) -> dict[str, Any]:
    import sys

    impls, missing = implementations(names, quick)
    started = time.perf_counter()

    def report(text: str) -> None:
        if progress:
            print(f"  accuracy: {text} ...", file=sys.stderr, flush=True)

    records = measure(functions, dtypes, impls, quick, report)
    report("exp kernel sweep")
    exp_records = exp_sweep(quick)
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(command),
        "machine": _bench.machine_info(),
        "versions": _bench.versions(),
        "quick": quick,
        "unavailable": missing,
        "seconds": time.perf_counter() - started,
        "functions": records,
        "exp": exp_records,
    }


# What the inputs are (docs/accuracy.md), as input_sets() builds them.
INPUTS = (
    "Inputs: random N(0, 3) rows of 1 to 65,536 elements, N(0, 30) rows, and adversarial "
    "rows: an offset of 1e4 (1e3 for float16); logits of a quarter of the dtype's maximum; "
    "outputs down to and below the subnormal range; all equal; two maxima; one dominant "
    "logit; one term at 0 with every other just under half an ULP of it; logits that differ "
    "by k eps; -inf entries; the range-reduction edges of exp; one row of 4,000,000 elements "
    "(262,144 with --quick)."
)

LEGEND = (
    "max ULP: |y - ref| in units of the output dtype's spacing at ref (subnormal spacing "
    "below the smallest normal). max rel. error: over outputs in the normal range. of bound: "
    'the largest |y - ref| / bound of README, "Accuracy contract" '
    "(4 eps (1 + |x - max| + log n) ref + tiny for softmax, 4 eps (1 + |ref|) + tiny for "
    "the others); above 1 breaks the bound. softmax's ULP error grows with |x - max|, "
    "because x - max is rounded in the computing dtype: the bound allows for it."
)

HEADER = (
    "dtype",
    "implementation",
    "max ULP",
    "worst ULP on",
    "max rel. error",
    "of bound",
    "worst of bound on",
)


def _ulp(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.2e}"


def _name(record: dict[str, Any]) -> str:
    return record["implementation"] + (" (peer)" if record["kind"] == "peer" else "")


def _of_bound(value: float) -> str:
    return f"{value:.2f}" + (" (over)" if value > 1 else "")


def _function_rows(document: dict[str, Any], function: str) -> list[list[str]]:
    rows = []
    for r in document["functions"]:
        if r["function"] != function:
            continue
        if "error" in r:
            rows.append([r["dtype"], _name(r), "failed", r["error"], "", "", ""])
            continue
        worst = r["max_ulp_input"]
        if r["special_value_mismatches"]:
            worst += f"; {r['special_value_mismatches']} NaN/inf differ"
        rows.append(
            [
                r["dtype"],
                _name(r),
                _ulp(r["max_ulp"]),
                worst,
                f"{r['max_relative_error']:.2g}",
                _of_bound(r["max_of_spec_bound"]),
                r["max_of_spec_bound_input"],
            ]
        )
    return rows


def _exp_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in document["exp"]:
        if "error" in r:
            rows.append([r["implementation"], r["dtype"], "-", r["error"], "", ""])
            continue
        rows.append(
            [
                r["implementation"],
                r["dtype"],
                f"{r['points']:,}",
                f"{r['max_ulp']:.3g}",
                f"{r['max_ulp_at']:.9g}",
                f"{r['correctly_rounded']:.1%}",
            ]
        )
    return rows


EXP_HEADER = ("exp kernel", "dtype", "points", "max ULP", "at d =", "correctly rounded")


def _exp_inputs(document: dict[str, Any]) -> str:
    inputs = {r["dtype"]: r["inputs"] for r in document["exp"] if "inputs" in r}
    return "; ".join(f"{k}: {t}" for k, t in inputs.items())


def _references(document: dict[str, Any]) -> str:
    kinds: dict[str, list[str]] = {}
    for r in document["functions"]:
        kind = r.get("reference") or "none"
        if r["dtype"] not in kinds.setdefault(kind, []):
            kinds[kind].append(r["dtype"])
    return "; ".join(f"{kind} for {' and '.join(d)} input" for kind, d in kinds.items())


def render(document: dict[str, Any], markdown: bool = False) -> str:
    m, v = document["machine"], document["versions"]
    out = [
        f"fastsoftmax {v['fastsoftmax']} accuracy; CPU: {m['cpu']} ({m['machine']}); "
        f"SIMD levels {', '.join(m['simd_levels']) or '-'}",
        _bench.versions_text(v),
    ]
    if document.get("unavailable"):
        out.append(
            "not measured: " + "; ".join(f"{k} ({e})" for k, e in document["unavailable"].items())
        )
    out += ["", f"Against a higher-precision reference ({_references(document)}):"]
    for function in dict.fromkeys(r["function"] for r in document["functions"]):
        out += [
            "",
            f"{function}:" if not markdown else f"**{function}**",
            "",
            _bench._table(HEADER, _function_rows(document, function), markdown),
        ]
    out += [
        "",
        f"exp(d) for d <= 0 alone ({_exp_inputs(document)}):",
        "",
        _bench._table(EXP_HEADER, _exp_rows(document), markdown),
        "",
        LEGEND,
    ]
    return "\n".join(out)


def render_summary(document: dict[str, Any]) -> str:
    """Per implementation and dtype, the largest fraction of the bound used over the
    three functions and every input set, with the machine named."""
    cells: dict[str, dict[str, tuple[float, str]]] = {}
    dtypes: list[str] = []
    for r in document["functions"]:
        if r["dtype"] not in dtypes:
            dtypes.append(r["dtype"])
        row = cells.setdefault(_name(r), {})
        value = math.inf if "error" in r else r["max_of_spec_bound"]
        if r["dtype"] not in row or value > row[r["dtype"]][0]:
            row[r["dtype"]] = (value, r["function"])
    rows = []
    for name, row in cells.items():
        line = [name]
        for dtype in dtypes:
            if dtype not in row:
                line.append("")
                continue
            value, function = row[dtype]
            text = (
                "failed" if value == math.inf else f"{value:.2f}" if value < 10 else f"{value:.0f}"
            )
            line.append(f"{text} ({function}{', over' if value > 1 else ''})")
        rows.append(line)
    m = document["machine"]
    intro = (
        "The largest fraction of the accuracy bound used (over softmax, log_softmax and "
        "logsumexp and every input set; above 1 breaks it) on "
        f"{_bench.cpu_text(m)}:"
    )
    return intro + "\n\n" + _bench._table(["implementation", *dtypes], rows, markdown=True)


def render_page(
    documents: Sequence[dict[str, Any]], paths: Sequence[str], output: str | None = None
) -> str:
    """docs/accuracy.md: a summary of the first run, then every run in full."""
    sources = _bench.words([_bench.link(p, output) for p in paths])
    out = [
        *_bench.page_header(
            "Accuracy",
            _bench.page_command("accuracy", paths, output),
            sources,
            f"[README.md, Accuracy contract]({_bench.relative('README.md', output)}"
            "#accuracy-contract) states the bound every backend keeps; its Accuracy section "
            "says how to run the measurement.",
        ),
        "",
        "## Summary",
        "",
        render_summary(documents[0]),
        "",
        "## How to read the tables",
        "",
        INPUTS,
        "",
        LEGEND,
    ]
    for document, path in zip(documents, paths):
        m, v = document["machine"], document["versions"]
        recorded = " ".join(document.get("command") or ["?"])
        out += [
            "",
            _bench.run_heading(document, path),
            "",
            f"- Run: `{recorded}`, {document.get('created', '?')}; saved in "
            f"{_bench.link(path, output)}.",
            f"- CPU: {_bench.cpu_text(m)}, {m['system']}; flags "
            f"{', '.join(m.get('flags', [])) or '-'}.",
            f"- fastsoftmax {v['fastsoftmax']}, SIMD levels measured: "
            f"{', '.join(m['simd_levels']) or '-'}.",
            f"- {_bench.versions_text(v)}.",
            f"- References: {_references(document)}.",
        ]
        if document.get("quick"):
            out.append("- A --quick run: smaller inputs.")
        if document.get("unavailable"):
            missing = "; ".join(f"{k} ({e})" for k, e in document["unavailable"].items())
            out.append(f"- Not measured: {missing}.")
        for function in dict.fromkeys(r["function"] for r in document["functions"]):
            out += [
                "",
                f"### {function}",
                "",
                _bench._table(HEADER, _function_rows(document, function), markdown=True),
            ]
        out += [
            "",
            "### exp(d) for d <= 0 alone",
            "",
            f"{_exp_inputs(document)}.",
            "",
            _bench._table(EXP_HEADER, _exp_rows(document), markdown=True),
        ]
    return "\n".join(out) + "\n"
