"""``scipy.special``'s softmax, log_softmax and logsumexp on fastsoftmax's kernels.

The same signatures, defaults, parameter names and positional order as SciPy's
(``softmax(x, axis=None)``, ``logsumexp(a, axis=None, b=None, keepdims=False,
return_sign=False)``), and the same results: reduction over every axis by
default, SciPy's result dtypes (``int8`` softmax gives float16, as SciPy's
does), NumPy scalars where SciPy gives them, and SciPy's errors (``ValueError``
for a softmax over an empty axis, ``TypeError`` for a bool softmax)::

    from fastsoftmax import scipy as special
    special.softmax(x)              # as scipy.special.softmax(x), on the fast kernel

Inputs the kernels do not compute (complex, long double, object arrays, or an
array of another library such as PyTorch or CuPy) go to SciPy itself when it
is installed. ``patch_scipy()`` makes ``scipy.special``'s three functions
these ones, for code that calls SciPy directly.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, Callable, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _api
from ._validation import reduction_axes

__all__ = ["log_softmax", "logsumexp", "patch_scipy", "patched_scipy", "softmax", "unpatch_scipy"]

ScipyAxis = Union[int, tuple[int, ...], None]
NAMES = ("softmax", "log_softmax", "logsumexp")

# The array types computed here; anything else (a subclass, another library's
# array) is SciPy's to answer.
_PYTHON_SCALARS = (int, float, bool)


def _scipy_function(name: str) -> Callable[..., Any] | None:
    """SciPy's own function (never ours, even when patched), or None."""
    try:
        from scipy.special import _logsumexp
    except ImportError:
        return None
    return getattr(_logsumexp, name, None)


def _numpy_input(x: Any) -> np.ndarray | None:
    """``x`` as an array of a dtype the kernels compute, or None (SciPy's case)."""
    if not (type(x) is np.ndarray or isinstance(x, (np.generic, list, tuple, *_PYTHON_SCALARS))):
        return None
    arr = np.asarray(x)
    if arr.dtype.kind in "fiub" and arr.dtype.itemsize <= 8:
        return arr
    return None


def _delegate(name: str, *args: Any) -> Any:
    function = _scipy_function(name)
    if function is None:
        raise TypeError(
            f"fastsoftmax.scipy.{name} computes float16/32/64, integer and bool NumPy arrays; "
            "other inputs go to SciPy, which is not installed"
        )
    return function(*args)


def _softmax_dtype(dtype: np.dtype) -> np.dtype:
    """SciPy's result dtype: that of exp(x - max) (int8 gives float16)."""
    if dtype.kind == "f":
        return dtype.newbyteorder("=")
    return np.exp(np.zeros(0, dtype)).dtype


def _softmax_door(name: str, x: Any, axis: ScipyAxis, log: bool) -> Any:
    arr = _numpy_input(x)
    if arr is None:
        return _delegate(name, x, axis)
    axes = reduction_axes(axis, arr.ndim)
    if arr.dtype.kind == "b":  # SciPy subtracts the max: NumPy refuses booleans
        raise TypeError(f"{name} of a boolean array: numpy boolean subtract is not supported")
    if arr.ndim and any(arr.shape[a] == 0 for a in axes):
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    kernel = _api.log_softmax if log else _api.softmax
    result = kernel(arr, axis=axis)
    dtype = _softmax_dtype(arr.dtype)
    if result.dtype != dtype:
        result = result.astype(dtype)
    return result


def softmax(x: ArrayLike, axis: ScipyAxis = None) -> Any:
    """scipy.special.softmax: ``exp(x - max) / sum``, over every axis by default."""
    return _softmax_door("softmax", x, axis, log=False)


def log_softmax(x: ArrayLike, axis: ScipyAxis = None) -> Any:
    """scipy.special.log_softmax: ``x - logsumexp(x)``, over every axis by default."""
    return _softmax_door("log_softmax", x, axis, log=True)


def logsumexp(
    a: ArrayLike,
    axis: ScipyAxis = None,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
) -> Any:
    """scipy.special.logsumexp: ``log(sum(b * exp(a)))``, over every axis by default;
    with ``return_sign``, the pair (log of the absolute value, sign)."""
    arr = _numpy_input(a)
    weights = None if b is None else _numpy_input(b)
    if arr is None or (b is not None and weights is None):
        return _delegate("logsumexp", a, axis, b, keepdims, return_sign)
    dtype = np.dtype(np.float64) if arr.dtype.kind in "iub" else arr.dtype.newbyteorder("=")
    if weights is not None:
        # Python scalars are weak, as in SciPy: float32 a with b=2 stays float32
        dtype = np.result_type(dtype, b if type(b) in _PYTHON_SCALARS else weights.dtype)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
    if arr.dtype.kind == "f" and arr.dtype.itemsize < dtype.itemsize:
        arr = arr.astype(dtype)  # a wider b: computed in the result's dtype, as SciPy does
    if weights is not None:  # SciPy broadcasts a and b together (b may add axes)
        arr, weights = np.broadcast_arrays(arr, weights)
    if keepdims and arr.ndim == 0:  # SciPy's result is then of shape (1,)
        arr = arr.reshape(1)
        weights = None if weights is None else weights.reshape(1)
    result = _api.logsumexp(arr, axis=axis, keepdims=keepdims, b=weights, return_sign=return_sign)
    if return_sign:
        value, sign = result
        return _as_dtype(value, dtype), _as_dtype(sign, dtype)
    return _as_dtype(result, dtype)


def _as_dtype(value: Any, dtype: np.dtype) -> Any:
    return value if value.dtype == dtype else value.astype(dtype)


# --- patching scipy.special -------------------------------------------------

_lock = threading.RLock()
_patched = False
_changed: list[tuple[Any, str, Callable[..., Any]]] = []  # (module, name, SciPy's function)
_loaded_before: set[str] = set()  # the modules loaded when patch_scipy ran


def _ours() -> dict[str, Callable[..., Any]]:
    return {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp}


def _replace(old: dict[int, Callable[..., Any]], modules: list[tuple[str, Any]]) -> list[tuple]:
    """In ``modules``, every attribute holding one of ``old``'s functions (by
    id) takes its replacement; returns (module, name, function replaced)."""
    changed = []
    for _, module in modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            replacement = old.get(id(value))
            if replacement is not None and replacement is not value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(module, attr, replacement)
                    changed.append((module, attr, value))
    return changed


def patch_scipy() -> None:
    """Make ``scipy.special.softmax``, ``log_softmax`` and ``logsumexp`` this
    module's functions: in ``scipy.special`` and in every module already
    loaded that imported them by name (``from scipy.special import softmax``);
    modules loaded later import ours. SciPy's defining module keeps them
    (ours call them for the inputs they leave to SciPy). Calling it again
    does nothing; :func:`unpatch_scipy` undoes it."""
    global _patched
    import scipy.special  # ImportError: there is nothing to patch

    with _lock:
        if _patched:
            return
        ours = _ours()
        swap = {}
        for name in NAMES:
            for original in (_scipy_function(name), getattr(scipy.special, name, None)):
                if original is not None and original is not ours[name]:
                    swap[id(original)] = ours[name]
        modules = [(n, m) for n, m in list(sys.modules.items()) if n != "scipy.special._logsumexp"]
        _loaded_before.clear()
        _loaded_before.update(n for n, _ in modules)
        _changed[:] = _replace(swap, modules)
        _patched = True


def unpatch_scipy() -> None:
    """Undo :func:`patch_scipy`: SciPy's own functions back where ours were
    put, and in the modules loaded since that imported them from
    ``scipy.special`` (those of fastsoftmax itself excepted)."""
    global _patched
    with _lock:
        if not _patched:
            return
        ours = list(_ours().values())
        for module, attr, original in _changed:
            if any(getattr(module, attr, None) is f for f in ours):
                setattr(module, attr, original)
        back = {id(f): _scipy_function(name) for name, f in _ours().items()}
        later = [
            (n, m)
            for n, m in list(sys.modules.items())
            if n not in _loaded_before and n.split(".")[0] != "fastsoftmax"
        ]
        _replace({k: f for k, f in back.items() if f is not None}, later)
        _changed.clear()
        _patched = False


def is_scipy_patched() -> bool:
    """Whether :func:`patch_scipy` is in effect."""
    return _patched


@contextlib.contextmanager
def patched_scipy() -> Iterator[None]:
    """``with patched_scipy():`` scipy.special's three functions are ours
    inside (and stay so after, if they were before)."""
    was_patched = _patched
    patch_scipy()
    try:
        yield
    finally:
        if not was_patched:
            unpatch_scipy()
