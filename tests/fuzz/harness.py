"""The fuzz harness: one input (a byte string) becomes one call, checked on
every backend and SIMD level.

Each byte string decodes (``decode``) into a case: a function (softmax,
log_softmax, logsumexp or one of the gradients), an input dtype and byte
order, a shape, a memory layout (contiguous, Fortran, reversed, strided,
broadcast, transposed, unaligned, read-only, a list, a Python scalar),
values with special values sprinkled in, an axis, a temperature, a ``where``
mask and an ``out`` (fresh, in place, partly overlapping the input, strided,
or one of the wrong kinds). Every decision reads one byte, the first option
when the bytes run out, so every byte string is a valid case and short ones
are the plain ones.

``check`` runs the case on every implementation and asserts, for each, that
the call raises one of the errors the case's defects call for (worked out
here, from the case, not from the package's own checks), or else returns a
result of the documented dtype and shape, within the accuracy bounds of the
float64 / long double reference (``conftest.assert_matches_oracle``), into
``out`` when one is given, with the input left unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
from conftest import IMPLEMENTATIONS, assert_matches_oracle

import fastsoftmax as fs
from fastsoftmax import _backends

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    AxisError = np.AxisError  # noqa: NPY201

try:
    import ml_dtypes

    BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    BFLOAT16 = None

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "softmax_grad", "log_softmax_grad")
DTYPES = (
    "float32", "float64", "float16", "bfloat16", ">f4", ">f8", "int64", "int8",
    "uint16", "bool", "complex64", "object", "str",
)  # fmt: skip
NDIMS = (2, 1, 3, 0, 4)
SIDES = (3, 1, 0, 2, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 129)
LONG_SIDES = (1000, 4099, 70000, 1 << 17)
MAX_ELEMENTS = 150_000
LAYOUTS = (
    "contiguous", "fortran", "reversed", "strided", "broadcast", "transposed",
    "unaligned", "list", "scalar",
)  # fmt: skip
AXES = ("default", -1, 0, 1, None, "int", "pair", (), "duplicate", "float")
TEMPERATURES = ("default", 1.0, 0.5, 2.5, 1e-3, 1e-40, 1e39, 1, np.float32(0.75),
                0.0, -1.0, math.inf, math.nan, "warm")  # fmt: skip
WHERES = (None, "random", "broadcast", "none_kept", "wrong_shape", "int_dtype")
OUTS = (None, "fresh", "in_place", "overlap", "strided", "wrong_shape", "wrong_dtype",
        "read_only", "list")  # fmt: skip
SCALES = (3.0, 1.0, 30.0, 1e-3, 300.0, 1e4, 1e30, 0.0)
SPECIALS = (math.nan, math.inf, -math.inf, -0.0, 1e-310, 1e-40, 3e38, -3e38, 1e300, 65504.0)


class Bytes:
    """Reads decisions from a byte string; zeros once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def pick(self, options: tuple) -> Any:
        return options[self.byte() % len(options)]

    def uint(self, nbytes: int) -> int:
        return int.from_bytes(bytes(self.byte() for _ in range(nbytes)), "little")

    def chance(self, in_256: int) -> bool:
        """True with probability in_256 / 256 (False once the bytes run out)."""
        return self.byte() >= 256 - in_256


@dataclasses.dataclass
class Case:
    function: str
    dtype: str
    shape: tuple[int, ...]
    layout: str
    read_only: bool
    axis: Any  # "default" for the parameter left out
    temperature: Any
    where: Any
    out: Any
    keepdims: bool
    threads: int
    seed: int
    scale: float
    specials: tuple[tuple[int, float], ...]

    def describe(self) -> str:
        fields = dataclasses.asdict(self)
        return ", ".join(f"{k}={v!r}" for k, v in fields.items())


def decode(data: bytes) -> Case:
    r = Bytes(data)
    function = r.pick(FUNCTIONS)
    dtype = r.pick(DTYPES)
    ndim = r.pick(NDIMS)
    shape = [r.pick(LONG_SIDES if r.chance(24) else SIDES) for _ in range(ndim)]
    # long rows, but a bounded size (empty arrays too: a list for out= has an
    # entry for each index of the other sides)
    while math.prod(max(side, 1) for side in shape) > MAX_ELEMENTS:
        biggest = shape.index(max(shape))
        shape[biggest] = max(1, shape[biggest] // 8)
    layout = r.pick(LAYOUTS)
    read_only = r.chance(40)
    axis = r.pick(AXES)
    if axis == "int":
        axis = r.byte() % (2 * ndim + 3) - ndim - 1  # some out of range
    elif axis == "pair":
        axis = (r.byte() % max(ndim, 1) - ndim, r.byte() % max(ndim, 1))
    elif axis == "duplicate":
        axis = (0, 0) if r.chance(128) else (-1, ndim - 1)
    elif axis == "float":
        axis = 0.0
    temperature = r.pick(TEMPERATURES)
    where = r.pick(WHERES)
    out = r.pick(OUTS)
    keepdims = r.chance(100)
    threads = 1 + r.byte() % 2
    seed = r.uint(4)
    scale = r.pick(SCALES)
    size = math.prod(shape)
    specials = []
    for _ in range(r.byte() % 6 if r.chance(90) else 0):
        specials.append((r.uint(3) % max(size, 1), r.pick(SPECIALS)))
    return Case(
        function, dtype, tuple(shape), layout, read_only, axis, temperature, where, out,
        keepdims, threads, seed, scale, tuple(specials),
    )  # fmt: skip


# --- building the arguments -------------------------------------------------


def _numpy_dtype(name: str) -> np.dtype | None:
    if name == "bfloat16":
        return BFLOAT16
    if name == "str":
        return np.dtype("<U4")
    return np.dtype(name)


def _values(case: Case, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Logits of ``shape`` in ``dtype``: random, scaled, specials at some places."""
    rng = np.random.default_rng(case.seed)
    v = np.array(rng.standard_normal(shape) * case.scale, dtype=np.float64)
    flat = v.reshape(-1)
    for at, special in case.specials:
        if flat.size:
            flat[at % flat.size] = special
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        if info is None:
            return v > 0
        clipped = np.clip(np.nan_to_num(v, nan=0.0), info.min, info.max)
        with np.errstate(invalid="ignore"):  # int64's max rounds up as a float
            return clipped.astype(dtype)
    if dtype.kind == "c":
        with np.errstate(over="ignore"):
            return (v + 1j).astype(dtype)
    if dtype.kind == "O":
        return v.astype(object)
    if dtype.kind == "U":
        return np.full(shape, "1.5", dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return v.astype(dtype)


def _laid_out(values: np.ndarray, case: Case) -> Any:
    """``values`` (C-contiguous) in the case's memory layout, same shape."""
    layout, shape = case.layout, values.shape
    rng = np.random.default_rng(case.seed + 1)
    ndim = values.ndim
    axis = int(rng.integers(ndim)) if ndim else 0
    if layout == "fortran" and ndim:
        return np.asfortranarray(values)
    if layout == "reversed" and ndim:
        base = np.ascontiguousarray(np.flip(values, axis))
        return np.flip(base, axis)
    if layout == "strided" and ndim:
        step = 2 + int(rng.integers(2))
        base = np.zeros((*shape[:axis], shape[axis] * step, *shape[axis + 1 :]), values.dtype)
        view = base[(slice(None),) * axis + (slice(None, None, step),)]
        view[...] = values
        return view
    if layout == "broadcast" and ndim:
        one = values[(slice(None),) * axis + (slice(0, 1),)]
        return np.broadcast_to(one, shape)  # read-only, stride 0
    if layout == "transposed" and ndim > 1:
        order = rng.permutation(ndim)
        return np.ascontiguousarray(values.transpose(order)).transpose(np.argsort(order))
    if layout == "unaligned" and values.dtype.itemsize > 1 and values.dtype.kind != "O":
        raw = np.zeros(values.nbytes + 1, np.uint8)
        view = raw[1:].view(values.dtype).reshape(shape)
        view[...] = values
        return view
    if layout == "list" and values.size <= 5000 and values.dtype.kind in "fiub" and 0 not in shape:
        return values.tolist()
    if layout == "scalar" and ndim == 0 and values.dtype.kind in "fiub":
        return values.item()
    return values


def _expected_axes(case: Case, ndim: int) -> tuple[tuple[int, ...] | None, set[type]]:
    """The reduced axes, or the errors the axis calls for."""
    axis = -1 if case.axis == "default" else case.axis
    if isinstance(axis, float):
        return None, {TypeError}
    if ndim == 0:
        return ((0,), set()) if axis in (None, -1, 0, ()) else (None, {AxisError})
    if axis is None:
        return tuple(range(ndim)), set()
    items = axis if isinstance(axis, tuple) else (axis,)
    if any(not -ndim <= a < ndim for a in items):
        return None, {AxisError}
    axes = tuple(a % ndim for a in items)
    if len(set(axes)) != len(axes):
        return None, {ValueError}
    return axes, set()


def _result_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    return dtype.newbyteorder("=")


@dataclasses.dataclass
class Call:
    """One case's arguments and what it must do."""

    function: Callable[..., Any]
    args: tuple
    kwargs: dict[str, Any]
    errors: set[type]  # non-empty: the call must raise one of these
    x: np.ndarray  # the logits (forward) or the outputs y (gradients), as values
    grad: np.ndarray | None
    axes: tuple[int, ...] | None
    mask: np.ndarray | None
    temperature: float
    result_shape: tuple[int, ...]
    result_dtype: np.dtype | None
    out: np.ndarray | None
    watched: list[np.ndarray]  # the buffers the call must leave unchanged
    scalar_result: bool


def build(case: Case) -> Call:
    """The call for ``case`` (fresh arrays each time: a call may write ``out``)."""
    forward = case.function in ("softmax", "log_softmax", "logsumexp")
    errors: set[type] = set()
    dtype = _numpy_dtype(case.dtype)
    if dtype is None:  # bfloat16 without ml_dtypes
        dtype = np.dtype(np.float32)
    if dtype.kind in "cOU":
        errors.add(TypeError)
    values = _values(case, dtype, case.shape)
    if not forward and not errors:
        # gradients take the outputs y of the forward function, in the case's dtype
        kind = "softmax" if case.function == "softmax_grad" else "log_softmax"
        work = values.astype(np.float64) if dtype.kind in "iub" else values
        values = np.asarray(getattr(fs, kind)(work, backend="numpy"))
        dtype = values.dtype
    shared_base = None
    x: Any
    if (
        case.out == "overlap"
        and case.layout == "contiguous"
        and not errors
        and dtype == _result_dtype(dtype)
    ):
        # x and out in one buffer, out a few elements further on
        # (room for out after x's elements: logsumexp's may have more than x, when x is empty)
        room = math.prod(max(side, 1) for side in values.shape)
        shared_base = np.zeros(room + 4, dtype)
        shared_base[: values.size] = values.reshape(-1)
        x = shared_base[: values.size].reshape(values.shape)
    else:
        x = _laid_out(values, case)
        # the values as laid out (a broadcast repeats some; a list or a Python
        # scalar takes NumPy's dtype for it)
        values = np.array(x)
        dtype = values.dtype
    axes, axis_errors = _expected_axes(case, values.ndim)
    errors |= axis_errors
    if case.read_only and isinstance(x, np.ndarray):
        x = x.view()
        x.flags.writeable = False

    kwargs: dict[str, Any] = {}
    if case.axis != "default":
        kwargs["axis"] = case.axis
    temperature = 1.0
    if forward and case.temperature != "default":
        kwargs["temperature"] = case.temperature
        t = case.temperature
        if isinstance(t, str):
            errors.add(TypeError)
        elif not (math.isfinite(t) and t > 0):
            errors.add(ValueError)
        else:
            temperature = float(t)

    shape = values.shape
    mask = None
    if case.where is not None:
        rng = np.random.default_rng(case.seed + 2)
        if case.where == "random":
            mask = rng.random(shape) < 0.7
        elif case.where == "broadcast":
            mask_shape = tuple(1 if rng.random() < 0.5 else s for s in shape)
            mask = rng.random(mask_shape) < 0.7
        elif case.where == "none_kept":
            mask = np.zeros(shape, bool)
        elif case.where == "wrong_shape":
            mask = np.ones((shape[-1] + 2 if shape else 2,), bool)
            errors.add(ValueError)
        else:
            mask = np.ones(shape, np.int8)
            errors.add(TypeError)
        kwargs["where"] = mask

    keep = case.function == "logsumexp" and case.keepdims
    if keep:
        kwargs["keepdims"] = True
    if case.function == "logsumexp":
        if values.ndim == 0 or axes is None:
            result_shape: tuple[int, ...] = ()
        elif keep:
            result_shape = tuple(1 if d in axes else s for d, s in enumerate(shape))
        else:
            result_shape = tuple(s for d, s in enumerate(shape) if d not in axes)
    else:
        result_shape = shape
    result_dtype = None if dtype.kind in "cOU" else _result_dtype(dtype)

    grad = None
    args: tuple = (x,)
    if not forward:
        rng = np.random.default_rng(case.seed + 3)
        grad = rng.standard_normal(shape).astype(result_dtype or np.float64)
        args = (x, grad)

    out = None
    if case.out is not None:
        out_dtype = result_dtype or np.dtype(np.float64)
        if case.out in ("fresh", "read_only") or (case.out == "overlap" and shared_base is None):
            out = np.full(result_shape, np.nan, out_dtype)
            if case.out == "read_only":
                out.flags.writeable = False
                errors.add(ValueError)
        elif case.out == "in_place":
            out = grad if grad is not None else x
            if not isinstance(out, np.ndarray):
                errors.add(TypeError)
            else:
                if out.shape != result_shape:
                    errors.add(ValueError)
                if out.dtype != out_dtype:
                    errors.add(TypeError)
                if not out.flags.writeable:
                    errors.add(ValueError)
        elif case.out == "overlap":
            size = math.prod(result_shape)
            out = shared_base[4 - (case.seed % 4) :][:size].reshape(result_shape)
        elif case.out == "strided":
            last = result_shape[-1] if result_shape else 1
            wide = np.full((*result_shape[:-1], 2 * last), np.nan, out_dtype)
            out = wide[..., ::2].reshape(result_shape)
        elif case.out == "wrong_shape":
            out = np.empty((*result_shape, 2), out_dtype)
            errors.add(ValueError)
        elif case.out == "wrong_dtype":
            out = np.empty(result_shape, np.float32 if out_dtype != np.float32 else np.float64)
            errors.add(TypeError)
        else:
            out = np.zeros(result_shape).tolist()
            errors.add(TypeError)
        kwargs["out"] = out
    watched = [a for a in (x, grad, mask) if isinstance(a, np.ndarray) and a is not out]
    if shared_base is not None:
        watched = [a for a in watched if a is not x]
    scalar = out is None and (values.ndim == 0 or result_shape == ())
    return Call(
        getattr(fs, case.function), args, kwargs, errors, np.asarray(values),
        None if grad is None else grad.copy(), axes,
        None if mask is None else np.broadcast_to(mask, shape) if not errors else None,
        temperature, result_shape, result_dtype, out if isinstance(out, np.ndarray) else None,
        watched, scalar,
    )  # fmt: skip


# --- checking -----------------------------------------------------------------


def _rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a`` with ``axes`` moved to the end and merged: 2-D rows."""
    moved = np.moveaxis(a, axes, range(-len(axes), 0))
    outer = a.ndim - len(axes)
    return moved.reshape(math.prod(moved.shape[:outer]), math.prod(moved.shape[outer:]))


def _check_gradient(
    kind: str,
    got: np.ndarray,
    y: np.ndarray,
    grad: np.ndarray,
    keep: np.ndarray | None,
    axes: tuple[int, ...],
) -> None:
    """Against the formula in long double: softmax y (g - sum g y), log_softmax
    g - exp(y) sum g; masked entries 0."""
    y = _rows(y.astype(np.longdouble), axes)
    g = _rows(grad.astype(np.longdouble), axes)
    keep = np.ones(y.shape, bool) if keep is None else keep
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "softmax_grad":
            s = np.sum(np.where(keep, g * y, 0), -1, keepdims=True)
            ref = y * (g - s)
            scale = np.abs(y) * (np.abs(g) + np.sum(np.where(keep, np.abs(g * y), 0), -1)[:, None])
        else:
            s = np.sum(np.where(keep, g, 0), -1, keepdims=True)
            p = np.exp(y)
            ref = g - p * s
            scale = np.abs(g) + p * np.sum(np.where(keep, np.abs(g), 0), -1)[:, None]
        ref = np.where(keep, ref, 0)
    n = max(y.shape[-1], 1)
    dtype = np.dtype(np.float64) if got.dtype == np.float64 else np.dtype(np.float32)
    eps = float(np.finfo(dtype).eps)
    bound = 8 * eps * (1 + math.log2(n)) * np.where(keep, scale, 0) + float(np.finfo(dtype).tiny)
    if got.dtype.itemsize == 2:
        bound = bound + 2.0**-8 * np.abs(ref) + 1e-7
    g_rows = _rows(got.astype(np.longdouble), axes)
    finite = np.isfinite(ref)
    assert (np.isnan(g_rows) == np.isnan(ref)).all(), "gradient NaNs differ"
    err = np.abs(g_rows[finite] - ref[finite])
    assert (err <= bound[finite]).all(), f"gradient error {err.max():.3e} beyond its bound"


def _check_value(kind: str, got: Any, call: Call) -> None:
    got = np.asarray(got)
    assert got.shape == call.result_shape, (got.shape, call.result_shape)
    assert got.dtype == call.result_dtype, (got.dtype, call.result_dtype)
    assert got.dtype.isnative
    if got.size == 0:
        return
    # 0-d inputs are rows of one element
    x = call.x if call.x.ndim else call.x.reshape(1)
    axes = call.axes if call.x.ndim else (0,)
    mask = None if call.mask is None else _rows(np.broadcast_to(call.mask, x.shape), axes)
    if kind.endswith("_grad"):
        _check_gradient(kind, got.reshape(x.shape), x, call.grad.reshape(x.shape), mask, axes)
        return
    x_rows = _rows(x, axes)
    if kind == "logsumexp":
        y_rows = got.reshape((x_rows.shape[0],))
    else:
        y_rows = _rows(got.reshape(x.shape), axes)
    if x_rows.shape[-1] == 0:  # an empty reduction: -inf (logsumexp), nothing else to check
        assert kind != "logsumexp" or (y_rows == -np.inf).all()
        return
    assert_matches_oracle(kind, y_rows, x_rows, -1, call.temperature, mask)


def check_call(case: Case) -> str:
    """Run ``case`` once on the backend selected now; returns the outcome
    ("ok" or the error's name). AssertionError on anything wrong."""
    call = build(case)
    before = [(a, a.copy()) for a in call.watched]
    try:
        with np.errstate(all="ignore"):
            result = call.function(*call.args, **call.kwargs, backend=_current_backend)
    except (TypeError, ValueError) as error:  # AxisError is a ValueError
        if not call.errors:
            raise AssertionError(f"unexpected {type(error).__name__}: {error}") from error
        if not any(isinstance(error, e) for e in call.errors):
            raise AssertionError(
                f"raised {type(error).__name__} ({error}), expected one of "
                f"{sorted(e.__name__ for e in call.errors)}"
            ) from error
        outcome = type(error).__name__
    else:
        assert not call.errors, (
            f"no error raised, expected one of {sorted(e.__name__ for e in call.errors)}"
        )
        if call.out is not None:
            assert result is call.out, "the result is not out"
        elif call.scalar_result:
            assert isinstance(result, np.generic), f"0-d result is a {type(result).__name__}"
        else:
            assert isinstance(result, np.ndarray)
        _check_value(case.function, result, call)
        outcome = "ok"
    for original, copy in before:
        assert original.tobytes() == copy.tobytes(), "an input was modified"
    return outcome


_current_backend = "numpy"


def check(data: bytes) -> str:
    """Decode ``data`` and check it on every implementation (every SIMD level
    of the compiled backend). Returns the outcome; AssertionError (naming
    the implementation and the case) on anything wrong."""
    global _current_backend
    case = decode(data)
    cpp = _backends._modules.get("cpp")
    threads = fs.get_num_threads()
    level = cpp.simd_level() if cpp is not None else None
    fs.set_num_threads(case.threads)
    outcomes = set()
    try:
        for name, simd in IMPLEMENTATIONS:
            _current_backend = name
            if simd is not None:
                cpp.set_simd_level(simd)
            try:
                outcomes.add(check_call(case))
            except AssertionError as failure:
                raise AssertionError(
                    f"{name}{'-' + simd if simd else ''}: {failure}\ncase: {case.describe()}"
                ) from failure
    finally:
        fs.set_num_threads(threads)
        if cpp is not None:
            cpp.set_simd_level(level)
    assert len(outcomes) == 1, f"implementations disagree: {outcomes}\ncase: {case.describe()}"
    return outcomes.pop()


def features(data: bytes, outcome: str) -> set[tuple[str, str]]:
    """What a case exercises, for keeping a corpus that covers each choice."""
    case = decode(data)
    axis = case.axis
    kinds = {
        "function": case.function,
        "dtype": case.dtype,
        "ndim": str(len(case.shape)),
        "empty": str(0 in case.shape),
        "layout": case.layout,
        "read_only": str(case.read_only),
        "axis": type(axis).__name__ if axis not in ("default", None) else str(axis),
        "temperature": repr(case.temperature),
        "where": str(case.where),
        "out": str(case.out),
        "specials": str(bool(case.specials)),
        "outcome": outcome,
    }
    pairs = {(k, v) for k, v in kinds.items()}
    pairs |= {(f"{case.function}+{k}", v) for k, v in kinds.items() if k != "function"}
    return pairs
