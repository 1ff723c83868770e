"""Backends, SIMD levels and threads: the registry, lazy numba, the
fallback without the extension, agreement between backends, and results
independent of the thread count."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import assert_matches_oracle, random_logits, run_python

import fastsoftmax as fs

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError  # type: ignore[attr-defined,misc]  # noqa: NPY201


def test_backends_best_first():
    names = fs.backends()
    assert names[-1] == "numpy"
    assert list(names) == [n for n in ("cpp", "numba", "numpy") if n in names]
    assert fs.info()["default_backend"] == names[0]


@pytest.mark.skipif(
    os.environ.get("FASTSOFTMAX_EXPECT_INSTALLED") == "pure",
    reason="the pure-Python install of .ci/wheel has no extension by design",
)
def test_compiled_extension_is_built():
    """The test install must have the extension (CI builds it); a missing
    one is reported by info() and would hide the cpp backend from the suite."""
    assert "cpp" in fs.backends(), fs.info()["unavailable"]
    assert fs.info()["simd_level"] in fs.info()["simd_levels"]


def test_info_fields():
    info = fs.info()
    for key in ("version", "backends", "simd_level", "threads", "unavailable"):
        assert key in info
    json.dumps(info, default=str)


def test_import_does_not_import_numba():
    out = run_python("import sys, fastsoftmax; print('numba' in sys.modules)")
    assert out.strip() == "False"


def test_works_without_the_extension():
    code = (
        "import json, fastsoftmax as fs;"
        "print(json.dumps([fs.backends(), fs.info()['unavailable'],"
        " fs.softmax([2.0, 1.0, 0.1]).tolist()]))"
    )
    names, unavailable, values = json.loads(run_python(code, FASTSOFTMAX_DISABLE_EXTENSION="1"))
    assert "cpp" not in names and "numpy" in names
    assert "cpp" in unavailable
    np.testing.assert_allclose(values, [0.65900114, 0.24243297, 0.09856589], rtol=1e-7)


@pytest.mark.parametrize("level", fs.info()["simd_levels"] or ["(none)"])
def test_simd_override_from_environment(level):
    """Every level this CPU runs can be forced, and computes."""
    if level == "(none)":
        pytest.skip("no compiled extension")
    out = run_python(
        "import fastsoftmax as fs; print(fs.info()['simd_level'], fs.softmax([0.0, 0.0])[0])",
        FASTSOFTMAX_SIMD=level,
    )
    assert out.split() == [level, "0.5"]


def test_threads_from_environment():
    out = run_python(
        "import fastsoftmax as fs; print(fs.get_num_threads())", FASTSOFTMAX_NUM_THREADS="3"
    )
    assert out.strip() == "3"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects(bad):
    with pytest.raises(ValueError):
        fs.set_num_threads(bad)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("shape", [(1024, 600), (64, 2500), (3, 64, 700)])
def test_results_do_not_depend_on_threads(backend, kind, axis, shape):
    """Also for columns split among threads in whole 4 KiB pieces of rows."""
    x = random_logits(np.random.default_rng(31), shape, np.float32)
    f = getattr(fs, kind)
    previous = fs.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 7):
            fs.set_num_threads(threads)
            results.append(f(x, axis=axis, backend=backend))
    finally:
        fs.set_num_threads(previous)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_backends_agree(dtype, kind):
    """numba and numpy against cpp on the same random inputs: each within
    the accuracy bound of the oracle, and close to each other."""
    rng = np.random.default_rng(32)
    cases = [
        random_logits(rng, shape, dtype, scale)
        for shape, scale in (((33, 77), 3.0), ((5, 1000), 10.0), ((257, 3), 1.0))
    ]
    for x in cases:
        results = {name: getattr(fs, kind)(x, backend=name) for name in fs.backends()}
        for y in results.values():
            assert_matches_oracle(kind, y, x)
        first = results[fs.backends()[0]]
        for y in results.values():
            np.testing.assert_allclose(y, first, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_calls_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(33)
    inputs = [random_logits(rng, (64, 1000), np.float32) for _ in range(8)]
    want = [fs.softmax(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(fs.softmax, inputs * 4))
    for i, y in enumerate(got):
        np.testing.assert_array_equal(y, want[i % len(inputs)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_threads_work_after_fork():
    """The worker pool started by the parent is rebuilt in a forked child
    (whose copy has no threads): a threaded call there finishes with the same
    values."""
    code = (
        "import os, numpy as np, fastsoftmax as fs\n"
        "fs.set_num_threads(2)\n"
        "x = np.random.default_rng(1).normal(size=(512, 1024)).astype(np.float32)\n"
        "want = fs.softmax(x)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.array_equal(fs.softmax(x), want) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child', os.waitstatus_to_exitcode(status))\n"
    )
    assert "child 0" in run_python(code)


def test_calls_from_many_threads_with_threaded_calls():
    """Calls that each want two threads, from eight Python threads at once:
    the one that holds the pool uses it, the others run on their own thread;
    every result is the single-thread result."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(34)
    inputs = [random_logits(rng, (256, 1024), np.float32) for _ in range(4)]
    previous = fs.get_num_threads()
    fs.set_num_threads(1)
    want = [fs.softmax(x) for x in inputs]
    fs.set_num_threads(2)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(fs.softmax, inputs * 6))
    finally:
        fs.set_num_threads(previous)
    for i, y in enumerate(got):
        np.testing.assert_array_equal(y, want[i % len(inputs)])


def test_demo_and_info_commands():
    out = run_python("from fastsoftmax.__main__ import main; main(['demo'])")
    assert "0.659" in out
    out = run_python("from fastsoftmax.__main__ import main; main(['info'])")
    assert json.loads(out)["version"] == fs.__version__


needs_cpp = pytest.mark.skipif("cpp" not in fs.backends(), reason="no compiled extension")


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (1, 3), (4, 5, 7), (2, 1000)])
@pytest.mark.parametrize("log", [False, True])
def test_one_step_call_matches_the_general_path(dtype, shape, log):
    """_core.softmax_last_axis (the public call's fast path) gives the same bits
    as the general path through strided views."""
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(5).normal(0, 4, shape).astype(dtype)
    fast = _cpp_backend.softmax_last_axis(x, -1, log)
    assert fast is not None and fast.dtype == x.dtype and fast.shape == x.shape
    assert fast.flags.c_contiguous and not np.shares_memory(fast, x)
    general = np.empty_like(x)
    x3 = x.reshape(1, -1, shape[-1])
    _cpp_backend._core.softmax(x3, general.reshape(x3.shape), None, 1.0, log)
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(_cpp_backend.softmax_last_axis(x, x.ndim - 1, log), fast)


@needs_cpp
@pytest.mark.parametrize(
    "case",
    [
        "list",
        "int",
        "float16",
        "fortran",
        "strided",
        "byteswapped",
        "0-d",
        "empty",
        "subclass",
        "other axis",
        "unaligned",
    ],
)
def test_one_step_call_declines_what_it_does_not_handle(case):
    """Each such input makes the fast path return None, and the public call
    still gives the reference values (through the general path)."""
    from fastsoftmax import _cpp_backend

    base = np.random.default_rng(6).normal(0, 2, (6, 8))
    axis = -1
    x = {
        "list": base.tolist(),
        "int": np.arange(12).reshape(3, 4),
        "float16": base.astype(np.float16),
        "fortran": np.asfortranarray(base),
        "strided": base[:, ::2],
        "byteswapped": base.astype(base.dtype.newbyteorder()),
        "0-d": np.array(1.5),
        "empty": np.empty((0, 4)),
        "subclass": np.ma.masked_array(base),
        "other axis": base,
        "unaligned": np.frombuffer(
            b"\0" + base.astype(np.float64).tobytes(), np.float64, 48, 1
        ).reshape(6, 8),
    }[case]
    if case == "other axis":
        axis = 0
    assert _cpp_backend.softmax_last_axis(x, axis, False) is None
    if case == "subclass":
        return  # masked arrays take the general path; its semantics are tested elsewhere
    got = fs.softmax(x, axis=axis)
    want = fs.softmax(np.asarray(x, dtype=np.float64), axis=axis, backend="numpy")
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=2e-3, atol=1e-300)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (1, 3), (4, 5, 7), (2, 1000)])
def test_one_step_logsumexp_matches_the_general_path(dtype, shape):
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(7).normal(0, 4, shape).astype(dtype)
    fast = _cpp_backend.logsumexp_last_axis(x, -1)
    assert fast is not None and fast.dtype == x.dtype and fast.shape == shape[:-1]
    general = np.empty(shape[:-1], dtype)
    x3 = x.reshape(1, -1, shape[-1])
    _cpp_backend._core.logsumexp(x3, general.reshape(1, -1), None, 1.0)
    np.testing.assert_array_equal(fast, general)
    public = fs.logsumexp(x)
    assert type(public) is type(fs.logsumexp(x, keepdims=True)[..., 0][()])
    np.testing.assert_array_equal(public, general)


@needs_cpp
def test_one_step_logsumexp_declines_other_calls():
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(8).normal(0, 2, (6, 8))
    assert _cpp_backend.logsumexp_last_axis(np.asfortranarray(x), -1) is None
    assert _cpp_backend.logsumexp_last_axis(x, 0) is None
    assert _cpp_backend.logsumexp_last_axis(x.tolist(), -1) is None
    assert _cpp_backend.logsumexp_last_axis(x.astype(np.float16), -1) is None
    np.testing.assert_allclose(
        fs.logsumexp(np.asfortranarray(x)), fs.logsumexp(x, backend="numpy"), rtol=1e-14
    )


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3,), (4, 5, 7), (2, 1000)])
def test_one_step_logsumexp_writes_into_out(dtype, shape):
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(9).normal(0, 4, shape).astype(dtype)
    out = np.full(shape[:-1], np.nan, dtype)
    assert _cpp_backend.logsumexp_last_axis(x, -1, out) is out
    np.testing.assert_array_equal(out, _cpp_backend.logsumexp_last_axis(x, -1))
    public_out = np.full(shape[:-1], np.nan, dtype)
    assert fs.logsumexp(x, out=public_out) is public_out
    np.testing.assert_array_equal(public_out, out)


@needs_cpp
def test_one_step_logsumexp_declines_an_out_it_cannot_take():
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(10).normal(0, 2, (6, 8))
    for out in (
        np.empty(6, np.float32),  # another dtype
        np.empty(5),  # another shape
        np.empty((6, 1)),  # keepdims shape
        np.empty(12)[::2],  # not contiguous
        np.empty(6)[::-1],  # reversed
        x.reshape(-1)[:6],  # overlaps x
    ):
        assert _cpp_backend.logsumexp_last_axis(x, -1, out) is None
    readonly = np.empty(6)
    readonly.flags.writeable = False
    assert _cpp_backend.logsumexp_last_axis(x, -1, readonly) is None
    overlapping = x.reshape(-1)[:6]
    want = fs.logsumexp(x, backend="numpy")
    assert fs.logsumexp(x, out=overlapping) is overlapping
    np.testing.assert_allclose(overlapping, want, rtol=1e-14)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [8, 16, 128, 1000])
def test_rows_along_the_outer_index_take_the_values_of_inner_rows(dtype, n):
    # A batch of (rows, 1, n) (the general path's view of a C-contiguous array)
    # is computed as (1, rows, n): the same values as the one-step call.
    from fastsoftmax import _cpp_backend

    x = np.random.default_rng(11).normal(0, 3, (37, n)).astype(dtype)
    core = _cpp_backend._core
    for log in (False, True):
        outer = np.empty_like(x)
        core.softmax(x.reshape(37, 1, n), outer.reshape(37, 1, n), None, 1.0, log)
        inner = np.empty_like(x)
        core.softmax(x.reshape(1, 37, n), inner.reshape(1, 37, n), None, 1.0, log)
        np.testing.assert_array_equal(outer, inner)
    outer_lse = np.empty(37, dtype)
    core.logsumexp(x.reshape(37, 1, n), outer_lse.reshape(37, 1), None, 1.0)
    np.testing.assert_array_equal(outer_lse, _cpp_backend.logsumexp_last_axis(x, -1))


@pytest.mark.parametrize("function", [fs.softmax, fs.log_softmax, fs.logsumexp])
def test_huge_axis_and_array_temperature_keep_their_errors(function):
    """Regression: the one-step path passed any int axis to the extension
    (TypeError from nanobind for 2**31) and compared an array temperature
    with 1.0 (ValueError: ambiguous truth value)."""
    x = np.ones((2, 3), np.float32)
    with pytest.raises(AxisError):
        function(x, axis=2**31)
    with pytest.raises(AxisError):
        function(x, axis=-(2**40))
    with pytest.raises(TypeError):
        function(x, temperature=np.array([1.0, 2.0]))


@needs_cpp
@pytest.mark.parametrize("log", [False, True])
def test_one_step_call_into_out(log):
    """out= takes the one-step path when out is x itself or apart from it, and
    declines (None: the general path) for every other out."""
    from fastsoftmax import _cpp_backend

    rng = np.random.default_rng(9)
    x = rng.normal(0, 3, (5, 9)).astype(np.float32)
    want = _cpp_backend.softmax_last_axis(x, -1, log)
    out = np.empty_like(x)
    assert _cpp_backend.softmax_last_axis(x, -1, log, out) is out
    np.testing.assert_array_equal(out, want)
    inplace = x.copy()
    assert _cpp_backend.softmax_last_axis(inplace, -1, log, inplace) is inplace
    np.testing.assert_array_equal(inplace, want)

    buffer = np.zeros(x.size + 3, np.float32)
    shifted_in, shifted_out = buffer[:-3].reshape(x.shape), buffer[3:].reshape(x.shape)
    shifted_in[...] = x
    readonly = np.empty_like(x)
    readonly.flags.writeable = False
    declined = {
        "partial overlap": (shifted_in, shifted_out),
        "other dtype": (x, np.empty(x.shape, np.float64)),
        "other shape": (x, np.empty((9, 5), np.float32)),
        "fortran": (x, np.empty(x.shape, np.float32, order="F")),
        "read-only": (x, readonly),
        "not an array": (x, [[0.0] * 9] * 5),
    }
    for name, (source, target) in declined.items():
        assert _cpp_backend.softmax_last_axis(source, -1, log, target) is None, name
    function = fs.log_softmax if log else fs.softmax
    got = function(shifted_in, out=shifted_out)  # the general path reads x from a copy
    assert got is shifted_out
    np.testing.assert_array_equal(got, want)


@contextlib.contextmanager
def _compiled_at_level(level: str) -> Iterator[Any]:
    """The extension module with `level` set, the previous level restored after."""
    if level == "(none)":
        pytest.skip("no compiled extension")
    from fastsoftmax import _core

    previous = _core.current_level()
    assert _core.set_level(level)
    try:
        yield _core
    finally:
        _core.set_level(previous)


def _cpu_vendor() -> tuple[str, int]:
    """The first CPU's vendor_id and family from /proc/cpuinfo ("", 0 if absent)."""
    vendor, family = "", 0
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key.strip() == "cpu family" and not family:
                    family = int(value)
                if not line.strip():
                    break
    except (OSError, ValueError):
        pass
    return vendor, family


def _zen1_to_zen4() -> bool | None:
    """Whether the CPU is AMD's Zen 1 to Zen 4 (families 0x17 and 0x19), whose
    tuning defaults differ; None where /proc/cpuinfo cannot say (not x86-64)."""
    vendor, family = _cpu_vendor()
    if platform.machine() != "x86_64" or not vendor:
        return None
    return vendor == "AuthenticAMD" and family in (0x17, 0x19)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("level", fs.info()["simd_levels"] or ["(none)"])
def test_the_online_threshold_setting(level, function):
    """Rows of 512 KiB, 1 MiB and 4 MiB with the defaults, with every row
    online and with every row in three passes: log_softmax and logsumexp
    give the same bits on both paths; softmax's online sum is merged from
    chunk sums, so its values may differ in the last bit, and its defaults
    give the bits of the path the level and the CPU pick (AVX-512: online
    from online_base_bytes(), 1 MiB on AMD's Zen 1 to Zen 4 and 512 KiB
    elsewhere; the other levels: three passes up to 32 MiB).
    set_online_row_bytes(0) restores the defaults."""
    with _compiled_at_level(level) as core:
        base = core.online_base_bytes()
        zen = _zen1_to_zen4()
        if zen is not None:
            assert base == (1 << 20 if zen else 512 << 10)
        x = random_logits(np.random.default_rng(7), (3, 1 << 20), np.float32)
        lengths = (1 << 17, 1 << 18, 1 << 20)
        f = getattr(fs, function)
        # The path each length takes by default: from the base (4 x 512 KiB
        # for logsumexp on every CPU; 32 MiB for softmax below AVX-512).
        threshold = {"log_softmax": base, "logsumexp": 2 << 20}.get(
            function, base if level == "avx512" else 32 << 20
        )
        try:
            assert core.online_row_bytes() == 0
            for n in (*lengths, threshold // 4 - 1, threshold // 4):
                online = core.row_path(n, False, function) == "online"
                assert online == (4 * n >= threshold), n
                assert (core.row_path(n // 2, True, function) == "online") == online, n
            results = {}
            for setting in (0, 1 << 18, 1 << 40):
                core.set_online_row_bytes(setting)
                assert core.online_row_bytes() == setting
                results[setting] = [f(x[:, :n], axis=-1) for n in lengths]
            softmax_default = base if level == "avx512" else 32 << 20
            for setting in (1 << 18, 1 << 40):
                for n, got, want in zip(lengths, results[setting], results[0]):
                    same_path = (4 * n >= setting) == (4 * n >= softmax_default)
                    if function == "softmax" and not same_path:
                        np.testing.assert_array_max_ulp(got, want, maxulp=2)
                    else:
                        np.testing.assert_array_equal(got, want, err_msg=f"n={n} {setting}")
        finally:
            core.set_online_row_bytes(0)


@pytest.mark.parametrize("level", fs.info()["simd_levels"] or ["(none)"])
def test_the_block_rows_setting(level):
    """Float softmax rows of exactly eight vectors go in groups or, two at a
    time, through the short-row kernels (block_rows_in_groups()): the same
    bits either way, rows needing the careful exp and special rows among
    them included. The default is on for AMD's Zen 1 to Zen 4 only, and
    set_block_rows_in_groups(-1) restores it."""
    with _compiled_at_level(level) as core:
        default = core.block_rows_in_groups()
        zen = _zen1_to_zen4()
        if zen is not None:
            assert default == zen

        def short_limit(function: str, f64: bool = False) -> int:
            return max(n for n in range(1, 300) if core.row_path(n, f64, function) == "short_rows")

        # logsumexp's short rows are four vectors on every level: the lanes
        lanes = short_limit("logsumexp") // 4
        assert lanes == {"avx512": 16, "avx2_wide": 16, "avx2": 8}.get(level, 4)
        block = 8 * lanes
        rng = np.random.default_rng(12)
        try:
            core.set_block_rows_in_groups(0)
            eight_short = short_limit("softmax") == block
            assert eight_short == (level in ("avx512", "neon"))  # 32 vector registers
            paths = {}
            for setting in (0, 1):
                core.set_block_rows_in_groups(setting)
                assert core.block_rows_in_groups() == bool(setting)
                paths[setting] = [core.row_path(n, False, "softmax") for n in range(1, 300)]
                # double rows of eight vectors keep their path
                assert core.row_path(block // 2, True, "softmax") == (
                    "short_rows" if eight_short else "groups"
                )
            changed = [n for n in range(1, 300) if paths[0][n - 1] != paths[1][n - 1]]
            assert changed == ([block] if eight_short else [])
            if eight_short:
                assert paths[1][block - 1] == "groups"
                assert paths[1][block - 2] == "short_rows"
            for n in (block - 3, block):
                x = random_logits(rng, (21, n), np.float32)
                x[4] = np.linspace(-300.0, 0.0, n)  # subnormal exps: the careful exp
                x[9, 3] = np.nan
                x[15] = -np.inf
                results = []
                for setting in (0, 1):
                    core.set_block_rows_in_groups(setting)
                    results.append(fs.softmax(x, axis=-1))
                np.testing.assert_array_equal(results[1], results[0], err_msg=f"n={n}")
                np.testing.assert_array_equal(
                    results[0][:3], np.stack([fs.softmax(row) for row in x[:3]])
                )
            core.set_block_rows_in_groups(-1)
            assert core.block_rows_in_groups() == default
        finally:
            core.set_block_rows_in_groups(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("level", fs.info()["simd_levels"] or ["(none)"])
def test_the_row_kernels_take_rows_of_no_elements(level, dtype):
    """Contiguous rows of no elements straight into the extension: logsumexp
    writes -inf (an empty sum), softmax writes nothing. They once left
    logsumexp's output as it was (and before that divided by zero)."""
    with _compiled_at_level(level) as core:
        x = np.lib.stride_tricks.as_strided(
            np.zeros(1, dtype), shape=(2, 3, 0), strides=(3 * 4, 4, 4), writeable=False
        )
        out = np.full((2, 3), 7.0, dtype)
        core.logsumexp(x, out, None, 1.0)
        np.testing.assert_array_equal(out, np.full((2, 3), -np.inf, dtype))
        y = np.empty((2, 3, 0), dtype)
        core.softmax(x, y, None, 1.0, False)
        with pytest.raises(ValueError):
            core.row_path(0, dtype == np.float64, "softmax")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("level", fs.info()["simd_levels"] or ["(none)"])
def test_the_group_budget_setting(level, dtype):
    """In-cache softmax and log_softmax rows go in groups of about
    group_bytes() of input: every budget, from one row a group to eight,
    gives the same bits, rows needing the careful exp among normal ones
    included (a group takes the careful form for all its rows).
    set_group_bytes(0) restores the CPU's default: 32 KiB on AMD's Zen 1 to
    Zen 4, the level's own (0) elsewhere."""
    with _compiled_at_level(level) as core:
        rng = np.random.default_rng(11)
        try:
            default = core.group_bytes()
            zen = _zen1_to_zen4()
            if zen is not None:
                assert default == (32 << 10 if zen else 0)
            for n in (100, 300, 1000, 2000, 5000):
                x = random_logits(rng, (19, n), dtype)
                # its smallest exps are subnormal: the careful exp for its whole group
                x[5] = np.linspace(-300.0 if dtype == np.float32 else -1000.0, 0.0, n)
                x[12, n // 3] = 40.0
                results = {}
                for budget in (1, 4 << 10, 32 << 10, 1 << 20):
                    core.set_group_bytes(budget)
                    assert core.group_bytes() == budget
                    results[budget] = (fs.softmax(x, axis=-1), fs.log_softmax(x, axis=-1))
                for budget, got in results.items():
                    for values, want in zip(got, results[1]):
                        np.testing.assert_array_equal(values, want, err_msg=f"budget {budget}")
            core.set_group_bytes(0)
            assert core.group_bytes() == default
        finally:
            core.set_group_bytes(0)
