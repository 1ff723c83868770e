"""Shared fixtures: every backend (and every SIMD level of the compiled one),
the dtypes, and the oracle with the bounds of README's Accuracy contract."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _backends, _reference


def _implementations() -> list[tuple[str, str | None]]:
    """(backend, SIMD level) pairs: the compiled backend once per level this CPU runs."""
    pairs: list[tuple[str, str | None]] = []
    for name in fs.backends():
        if name == "cpp":
            pairs += [("cpp", level) for level in fs.info()["simd_levels"]]
        else:
            pairs.append((name, None))
    return pairs


IMPLEMENTATIONS = _implementations()


@pytest.fixture(params=IMPLEMENTATIONS, ids=[f"{b}-{lv}" if lv else b for b, lv in IMPLEMENTATIONS])
def backend(request) -> str:
    """A backend name; for "cpp", with one SIMD level selected for the test."""
    name, level = request.param
    if level is None:
        yield name
        return
    cpp = _backends.get("cpp")
    previous = cpp.simd_level()
    cpp.set_simd_level(level)
    try:
        yield name
    finally:
        cpp.set_simd_level(previous)


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _oracle_dtype(dtype: np.dtype):
    """float64 for float32 work; long double (more digits on x86) for float64."""
    return np.longdouble if compute_dtype(dtype) == np.float64 else np.float64


def _rows_last(x, axis, where):
    x = np.moveaxis(np.asarray(x), axis, -1)
    mask = None if where is None else np.moveaxis(np.broadcast_to(where, x.shape), axis, -1)
    return x, mask


def oracle(kind: str, x, axis=-1, temperature=1.0, where=None):
    """The NumPy reference in higher precision, on the input's own values."""
    x = np.asarray(x)
    hi = _oracle_dtype(x.dtype)
    xr = np.moveaxis(x.astype(hi), axis, -1)
    mask = None
    if where is not None:
        mask = np.moveaxis(np.broadcast_to(np.asarray(where), x.shape), axis, -1)
    if kind == "logsumexp":
        return _reference.logsumexp_values(xr, mask, temperature)
    y = _reference.softmax_values(xr, mask, temperature, log=(kind == "log_softmax"))
    return np.moveaxis(y, -1, axis)


def assert_matches_oracle(kind: str, y, x, axis=-1, temperature=1.0, where=None):
    """The bounds of README's Accuracy contract, elementwise.

    softmax: |y - ref| <= 4 eps (1 + |x - max| / T + log n) ref + tiny;
    log_softmax, logsumexp: |y - ref| <= 4 eps (1 + |ref|) + tiny;
    NaN and infinities exactly where the reference has them. eps is that of
    the computing dtype; a float16 result adds its own rounding.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    ref = oracle(kind, x, axis, temperature, where)
    assert y.shape == ref.shape
    if y.dtype.kind in "fV" and y.dtype.itemsize < ref.dtype.itemsize:
        # beyond the result dtype's range the rounded result is +-inf
        big = np.abs(ref) > float(np.finfo(np.float32 if y.dtype.kind == "V" else y.dtype).max)
        if big.any():
            with np.errstate(over="ignore"):
                ref = np.where(big, ref.astype(y.dtype).astype(ref.dtype), ref)
    work = compute_dtype(x.dtype) if x.dtype.kind == "f" else np.dtype(np.float64)
    eps = float(np.finfo(work).eps)
    tiny = float(np.finfo(work).tiny)
    n = x.shape[axis] if kind != "logsumexp" and x.ndim else max(x.size, 1)
    yh = y.astype(ref.dtype)
    if kind == "softmax":
        with np.errstate(invalid="ignore"):
            xs = np.moveaxis(x.astype(ref.dtype), axis, -1)
            if where is not None:
                m = np.moveaxis(np.broadcast_to(where, x.shape), axis, -1)
                xs = np.where(m, xs, -np.inf)
            spread = np.abs(xs - np.max(xs, axis=-1, keepdims=True)) / temperature
            spread = np.moveaxis(np.where(np.isfinite(spread), spread, 0), -1, axis)
        bound = 4 * eps * (1 + spread + np.log(n)) * np.abs(ref) + tiny
    else:
        bound = 4 * eps * (1 + np.abs(ref)) + tiny
    if y.dtype.itemsize == 2:  # float16 / bfloat16 result: its own rounding on top
        half = float(np.finfo(y.dtype).eps) if y.dtype == np.float16 else 2.0**-8
        bound = bound + half * np.abs(ref) + float(np.finfo(np.float16).smallest_subnormal)
    same_special = (np.isnan(yh) == np.isnan(ref)).all() and (
        (np.isinf(yh) & (yh == ref)) == np.isinf(ref)
    ).all()
    assert same_special, f"special values differ:\n{y}\nexpected\n{ref.astype(y.dtype)}"
    finite = np.isfinite(ref)
    err = np.abs(yh[finite] - ref[finite])
    over = err > bound[finite] if np.ndim(bound) else err > bound
    if over.any():
        worst = int(np.argmax(err / (np.broadcast_to(bound, ref.shape)[finite])))
        raise AssertionError(
            f"{kind}: {int(over.sum())} of {err.size} values beyond the bound; "
            f"worst error {float(err[worst]):.3e} vs bound "
            f"{float(np.broadcast_to(bound, ref.shape)[finite][worst]):.3e} "
            f"at value {float(ref[finite][worst]):.6e}"
        )


def random_logits(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.fixture
def online_from_1mib():
    """Rows of 1 MiB and more take the compiled kernel's online algorithm
    during the test, for all three functions (logsumexp rows go online from
    four times the threshold), so tests of long rows exercise it."""
    if "cpp" not in fs.backends():
        yield
        return
    from fastsoftmax import _core

    previous = _core.online_row_bytes()
    _core.set_online_row_bytes(1 << 18)
    try:
        yield
    finally:
        _core.set_online_row_bytes(previous)


@pytest.fixture(scope="module")
def server():
    """The visualizer's server on 127.0.0.1 (a free port), serving in a thread
    for the tests of one module."""
    import threading

    from fastsoftmax._viz.server import make_server

    srv = make_server(0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def run_python(code: str, *, timeout: float = 300, **env: str) -> str:
    """Run code in a new Python process (environment variables added from
    env); assert it succeeds and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
