"""Backend registry: which implementations exist here, and the thread count.

A backend is a module with ``name``, ``softmax_rows(x, out, mask, T, log)``
and ``logsumexp_rows(x, out, mask, T)`` working on the 3-D views of
``_layout``. ``cpp`` is imported at once (it is cheap), ``numba`` on first
use, ``numpy`` is always there.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from . import _reference, _threads

PREFERENCE = ("cpp", "numba", "numpy")

_modules: dict[str, ModuleType] = {"numpy": _reference}
# The compiled backend once loaded, for the common call in one step: its
# softmax_last_axis(x, axis, log, out) and logsumexp_last_axis(x, axis, out) return
# the result, or None for arrays they do not take (see
# _validation.one_step_backend for the arguments that may try them).
one_step: ModuleType | None = None
_errors: dict[str, str] = {}
_num_threads = 1


def _load_cpp() -> None:
    if os.environ.get("FASTSOFTMAX_DISABLE_EXTENSION"):
        _errors["cpp"] = "disabled by FASTSOFTMAX_DISABLE_EXTENSION"
        return
    global one_step
    try:
        _modules["cpp"] = one_step = importlib.import_module("fastsoftmax._cpp_backend")
    except ImportError as error:
        note = os.path.join(os.path.dirname(__file__), "_no_extension.txt")
        if os.path.exists(note):  # written by the build that left the extension out
            with open(note, encoding="utf-8") as f:
                _errors["cpp"] = f"the extension was not built: {f.read().strip()}"
        else:
            _errors["cpp"] = f"the compiled extension did not import: {error}"


def _numba_installed() -> bool:
    if "numba" in _errors:
        return False
    return "numba" in _modules or importlib.util.find_spec("numba") is not None


def available() -> tuple[str, ...]:
    """The backends usable here, best first."""
    names = []
    for name in PREFERENCE:
        if name in _modules or (name == "numba" and _numba_installed()):
            names.append(name)
    return tuple(names)


def get(name: str | None) -> ModuleType:
    """The backend module called ``name``; None means the best available."""
    if name is None:
        for candidate in PREFERENCE:
            module = _try_get(candidate)
            if module is not None:
                return module
    elif isinstance(name, str):
        module = _try_get(name)
        if module is not None:
            return module
    raise ValueError(
        f"unknown or unavailable backend {name!r}; available: {', '.join(available())}"
        + (f" ({'; '.join(f'{k}: {v}' for k, v in _errors.items())})" if _errors else "")
    )


def _try_get(name: str) -> ModuleType | None:
    module = _modules.get(name)
    if module is None and name == "numba" and _numba_installed():
        try:
            module = importlib.import_module("fastsoftmax._numba_backend")
        except ImportError as error:
            _errors["numba"] = f"numba did not import: {error}"
            return None
        module.set_num_threads(_num_threads)
        _modules["numba"] = module
    return module


def errors() -> dict[str, str]:
    """Why a backend is missing, by name."""
    return dict(_errors)


def set_num_threads(threads: int) -> None:
    global _num_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"the number of threads must be a positive int, got {threads!r}")
    _num_threads = threads
    for module in _modules.values():
        setter = getattr(module, "set_num_threads", None)
        if setter is not None:
            setter(threads)


def get_num_threads() -> int:
    return _num_threads


def _apply_simd_override() -> None:
    level = os.environ.get("FASTSOFTMAX_SIMD")
    cpp = _modules.get("cpp")
    if level and cpp is not None:
        try:
            cpp.set_simd_level(level)
        except ValueError as error:
            import warnings

            warnings.warn(f"FASTSOFTMAX_SIMD ignored: {error}", RuntimeWarning, stacklevel=3)


_load_cpp()
_apply_simd_override()
set_num_threads(_threads.default_threads())
if "cpp" in _modules:
    _threads.register_with_threadpoolctl()
