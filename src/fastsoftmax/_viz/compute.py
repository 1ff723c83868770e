"""What the Softmax Visualizer shows, computed with fastsoftmax itself.

One function, :func:`analyze`, answers the page (through the JSON API of
``server``) and the terminal (``fastsoftmax show``). Input checking lives here
too, so the page, the API and the terminal refuse the same inputs with the
same words: :class:`InputError` carries a message meant for a person.

Every probability shown comes from ``fastsoftmax.softmax`` (or
``log_softmax`` / ``logsumexp``) on the backend asked for; NumPy only writes
out the textbook steps beside it (``exp(x - max)``, and the naive
``exp(x) / sum`` that overflows on large logits).
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from typing import Any

import numpy as np

import fastsoftmax as fs

MAX_LOGITS = 10_000
MAX_TEXT = 256 * 1024  # characters of a typed list of logits
CURVE_T_MIN = 0.05
CURVE_T_MAX = 10.0
CURVE_SAMPLES = 121  # temperatures sampled for the probability-vs-T chart
CURVE_MAX_CLASSES = 8  # the chart follows at most this many classes (the largest logits)
DTYPES = ("float64", "float32")

PRESETS = (
    {"name": "[2.0, 1.0, 0.1]", "logits": [2.0, 1.0, 0.1], "note": "the explainer's example"},
    {"name": "[10, 9, 9]", "logits": [10.0, 9.0, 9.0], "note": "amplification"},
    {
        "name": "[1000, 999, 998]",
        "logits": [1000.0, 999.0, 998.0],
        "note": "large logits: the naive formula overflows",
    },
    {
        "name": "[1, 2, 3, 4, 1, 2, 3]",
        "logits": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0],
        "note": "seven classes",
    },
)

# Said when softmax output is fed to a loss that applies softmax itself. Used
# when fastsoftmax has no SoftmaxAppliedTwiceWarning (or it did not fire).
FALLBACK_TWICE_WARNING = (
    "These logits look like probabilities (non-negative, each row summing to 1): "
    "softmax was probably applied before a loss that applies softmax itself. "
    "Pass the raw logits to the loss instead."
)

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,;]+")
_warnings_lock = threading.Lock()  # warnings.catch_warnings is process-global


class InputError(ValueError):
    """Input a person can fix; the message says how."""


# --------------------------------------------------------------------------- input


def _check_values(values: list[float]) -> np.ndarray:
    if not values:
        raise InputError("no logits: type at least one number, e.g. 2, 1, 0.1")
    if len(values) > MAX_LOGITS:
        raise InputError(f"too many logits: {len(values):,} (at most {MAX_LOGITS:,})")
    x = np.array(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"logit {i + 1} is {_word(x[i])}: every logit must be a finite number "
            f"(at most about 1.8e308 in size)"
        )
    return x


def _word(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "infinite" if value > 0 else "minus infinity"


def parse_logits(value: Any) -> np.ndarray:
    """Logits from a typed list (``"2, 1, 0.1"``, ``"[2 1 0.1]"``) or a JSON
    list of numbers, as a float64 array; :class:`InputError` otherwise."""
    if isinstance(value, str):
        return _check_values(_parse_text(value))
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LOGITS:
            raise InputError(f"too many logits: {len(value):,} (at most {MAX_LOGITS:,})")
        values = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise InputError(
                    f"logit {i + 1} is not a number ({_preview(item)}): "
                    "logits must be a flat list of numbers"
                )
            try:
                values.append(float(item))
            except OverflowError:  # an integer beyond float64
                raise InputError(f"logit {i + 1} is too large to be a float64") from None
        return _check_values(values)
    if value is None:
        raise InputError("no logits: send 'logits', a list of numbers such as [2, 1, 0.1]")
    raise InputError(f"logits must be a list of numbers or a typed list, not {_preview(value)}")


def _parse_text(text: str) -> list[float]:
    if len(text) > MAX_TEXT:
        raise InputError(f"the list of logits is too long ({len(text):,} characters)")
    body = text.strip().replace("\u2212", "-")  # a typographic minus sign
    if body[:1] in "[(" and body[-1:] in "])" and body:
        body = body[1:-1]
    tokens = [t for t in _SEPARATORS.split(body) if t]
    if len(tokens) > MAX_LOGITS:
        raise InputError(f"too many logits: {len(tokens):,} (at most {MAX_LOGITS:,})")
    values = []
    for i, token in enumerate(tokens):
        if _NON_FINITE.fullmatch(token):
            raise InputError(
                f"logit {i + 1} is {token!r}: every logit must be a finite number "
                "(NaN and infinity are not logits a network produces)"
            )
        if not _NUMBER.fullmatch(token):
            raise InputError(
                f"logit {i + 1} is not a number: {_preview(token)}. "
                "Type numbers separated by commas or spaces, e.g. 2, 1, 0.1"
            )
        values.append(float(token))
    return values


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_temperature(value: Any) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"temperature must be a number, not {_preview(value)}")
    try:
        t = float(value)
    except (ValueError, OverflowError):
        raise InputError(f"temperature must be a number, not {_preview(value)}") from None
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"temperature must be positive and finite, not {_preview(value)}")
    return t


def parse_backend(value: Any) -> str:
    available = fs.backends()
    if value is None or value == "":
        return available[0]
    if not isinstance(value, str) or value not in available:
        raise InputError(
            f"unknown or unavailable backend {_preview(value)}; available: {', '.join(available)}"
        )
    return value


def parse_target(value: Any, n: int) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"target must be a class index, not {_preview(value)}")
    if not 0 <= value < n:
        raise InputError(
            f"target class {value} is out of range: there are {n} classes (0..{n - 1})"
        )
    return value


def parse_dtype(value: Any) -> str:
    if value is None or value == "":
        return "float64"
    if value not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {_preview(value)}")
    return str(value)


# --------------------------------------------------------------------------- output


def jsonable(value: Any) -> Any:
    """Floats as JSON numbers, and inf / NaN (which JSON has not) as strings
    "inf", "-inf", "NaN"; NumPy arrays and scalars as lists and numbers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _losses_from_package(
    x: np.ndarray, p: np.ndarray, target: int, temperature: float, backend: str
) -> tuple[float, float, str | None] | None:
    """(loss of the logits, loss of softmax output, the package's warning
    text) with ``fastsoftmax.cross_entropy``; None where it is missing."""
    cross_entropy = getattr(fs, "cross_entropy", None)
    if cross_entropy is None:
        return None
    warning_class = getattr(fs, "SoftmaxAppliedTwiceWarning", None)
    t = np.array([target])
    try:
        with _warnings_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Logits such as [0.5, 0.5] look like probabilities too: not shown.
            correct = cross_entropy(
                x[None, :], t, reduction="none", temperature=temperature, backend=backend
            )
            del caught[:]
            twice = cross_entropy(p[None, :], t, reduction="none", backend=backend)
    except Exception:  # an API still settling: the logsumexp form below
        return None
    message = next(
        (
            str(w.message)
            for w in caught
            if warning_class is None or issubclass(w.category, warning_class)
        ),
        None,
    )
    return float(correct[0]), float(twice[0]), message


def _losses_from_logsumexp(
    x: np.ndarray, p: np.ndarray, target: int, temperature: float, backend: str
) -> tuple[float, float, None]:
    """The same with ``-log softmax(x / T)[t] = logsumexp(x / T) - x[t] / T``."""
    with np.errstate(over="ignore"):  # a temperature beyond float32 is inf there
        scaled_target = float(x[target] / x.dtype.type(temperature))
    correct = float(fs.logsumexp(x, temperature=temperature, backend=backend)) - scaled_target
    twice = float(fs.logsumexp(p, backend=backend)) - float(p[target])
    return correct, twice, None


def _cross_entropy(
    x: np.ndarray, p: np.ndarray, target: int, temperature: float, backend: str
) -> dict[str, Any]:
    """The loss of ``target`` from the logits, and the classic mistake: the
    same loss of the softmax output (softmax applied twice)."""
    losses = _losses_from_package(x, p, target, temperature, backend)
    source = "fastsoftmax.cross_entropy"
    if losses is None:
        losses = _losses_from_logsumexp(x, p, target, temperature, backend)
        source = "fastsoftmax.logsumexp"
    correct, twice, message = losses
    n = x.size
    return {
        "target": target,
        "correct": correct,
        "applied_twice": twice,
        "probability": float(p[target]),
        "probability_twice": float(fs.softmax(p, backend=backend)[target]),
        # The best the twice-applied loss can ever reach (p one-hot on the
        # target): -log(e / (e + n - 1)) = log(1 + (n - 1) / e), never 0.
        "applied_twice_floor": math.log1p((n - 1) / math.e),
        "warning": message or FALLBACK_TWICE_WARNING,
        "warning_source": "fastsoftmax.SoftmaxAppliedTwiceWarning" if message else "viz",
        "source": source,
    }


def _curve(x: np.ndarray, backend: str) -> dict[str, Any]:
    temperatures = np.geomspace(CURVE_T_MIN, CURVE_T_MAX, CURVE_SAMPLES)
    if x.size <= CURVE_MAX_CLASSES:
        classes = np.arange(x.size)
    else:  # the classes of the largest logits, in index order
        classes = np.sort(np.argsort(-x, kind="stable")[:CURVE_MAX_CLASSES])
    rows = np.empty((CURVE_SAMPLES, classes.size))
    for k, t in enumerate(temperatures):
        rows[k] = fs.softmax(x, temperature=float(t), backend=backend)[classes]
    return {
        "temperatures": temperatures,
        "classes": classes,
        "probabilities": rows.T,  # one list per class
        "all_classes": bool(classes.size == x.size),
    }


def analyze(
    logits: Any,
    temperature: Any = 1.0,
    backend: Any = None,
    target: Any = None,
    dtype: Any = None,
    *,
    curve: bool = True,
) -> dict[str, Any]:
    """Everything the page shows for these logits at this temperature.

    Raises :class:`InputError` for input a person can fix. Values are plain
    Python floats (possibly inf / NaN: pass through :func:`jsonable`)."""
    x64 = parse_logits(logits)
    t = parse_temperature(temperature)
    name = parse_backend(backend)
    dtype_name = parse_dtype(dtype)
    target_index = parse_target(target, x64.size)
    with np.errstate(over="ignore"):
        x = x64.astype(dtype_name)
        if not np.isfinite(x).all():
            raise InputError(f"a logit is too large for {dtype_name} (at most about 3.4e38)")

    p = fs.softmax(x, temperature=t, backend=name)
    logp = fs.log_softmax(x, temperature=t, backend=name)
    lse = float(fs.logsumexp(x, temperature=t, backend=name))
    with np.errstate(all="ignore"):
        tt = x.dtype.type(t)  # inf where t is beyond float32: the uniform limit
        m = x.max()
        shifted = np.exp((x - m) / tt)  # the stable numerators, in (0, 1]
        naive = np.exp(x / tt)  # the naive numerators: inf past ~709.78 (float64)
        naive_sum = naive.sum(dtype=x.dtype)
        naive_p = naive / naive_sum
        plogp = np.where(p > 0, p.astype(np.float64) * logp.astype(np.float64), 0.0)
    entropy = 0.0 - float(plogp.sum())  # 0.0, not -0.0, when certain
    overflow_at = float(np.log(np.finfo(x.dtype).max))
    result: dict[str, Any] = {
        "logits": x,
        "n": int(x.size),
        "temperature": t,
        "backend": name,
        "backends": list(fs.backends()),
        "dtype": dtype_name,
        "max": float(m),
        "argmax": int(np.argmax(p)),
        "probabilities": p,
        "log_probabilities": logp,
        "logsumexp": lse,
        "sum": math.fsum(p.astype(np.float64).tolist()),
        "entropy": entropy,
        "entropy_bits": entropy / math.log(2),
        "max_entropy": math.log(x.size),
        "stable": {"exp": shifted, "sum": float(shifted.sum(dtype=np.float64))},
        "naive": {
            "exp": naive,
            "sum": float(naive_sum),
            "probabilities": naive_p,
            "overflow": bool(not np.isfinite(naive_sum)),
            "ok": bool(np.isfinite(naive_p).all()),
            "overflow_threshold": overflow_at,
        },
        "cross_entropy": _cross_entropy(x, p, target_index, t, name),
    }
    if curve:
        result["curve"] = _curve(x, name)
    return result


def info() -> dict[str, Any]:
    """What the page needs before its first computation."""
    about = fs.info()
    return {
        "version": fs.__version__,
        "backends": list(fs.backends()),
        "default_backend": fs.backends()[0],
        "simd_level": about.get("simd_level"),
        "presets": list(PRESETS),
        "dtypes": list(DTYPES),
        "limits": {"max_logits": MAX_LOGITS},
        "temperature_range": [CURVE_T_MIN, CURVE_T_MAX],
        "cross_entropy": "fastsoftmax.cross_entropy"
        if hasattr(fs, "cross_entropy")
        else "fastsoftmax.logsumexp",
    }
