"""fastsoftmax: fast, exact softmax, log_softmax and logsumexp for NumPy arrays.

One API, three backends chosen at run time: ``"cpp"`` (the compiled SIMD
kernels, default), ``"numba"`` (JIT fallback) and ``"numpy"`` (the reference).
"""

from __future__ import annotations

from typing import Any

from . import _backends
from ._api import log_softmax, logsumexp, softmax
from ._gradients import log_softmax_grad, softmax_grad
from ._losses import SoftmaxAppliedTwiceWarning, cross_entropy
from .scipy import patch_scipy, patched_scipy, unpatch_scipy

__version__ = "0.1.0"

__all__ = [
    "SoftmaxAppliedTwiceWarning",
    "__version__",
    "backends",
    "cross_entropy",
    "get_num_threads",
    "info",
    "log_softmax",
    "log_softmax_grad",
    "logsumexp",
    "patch_scipy",
    "patched_scipy",
    "set_num_threads",
    "softmax",
    "softmax_grad",
    "unpatch_scipy",
]


def backends() -> tuple[str, ...]:
    """The backends available here, best first (``backend=None`` uses the first)."""
    return _backends.available()


def set_num_threads(n: int) -> None:
    """Threads used for large inputs. The default: FASTSOFTMAX_NUM_THREADS, then
    OMP_NUM_THREADS, else the CPUs this process may run on capped by its
    cgroup's CPU quota. threadpoolctl's limits set it too. Results do not
    depend on it."""
    _backends.set_num_threads(n)


def get_num_threads() -> int:
    """The thread count set by :func:`set_num_threads`."""
    return _backends.get_num_threads()


def info() -> dict[str, Any]:
    """Version, available backends, the SIMD level in use and the thread count."""
    import platform

    import numpy as np

    cpp = _backends._modules.get("cpp")
    return {
        "version": __version__,
        "backends": backends(),
        "default_backend": backends()[0],
        "simd_level": cpp.simd_level() if cpp is not None else None,
        "simd_levels": cpp.simd_levels() if cpp is not None else (),
        "threads": get_num_threads(),
        "unavailable": _backends.errors(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
