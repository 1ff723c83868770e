"""Memory: no leak of Python objects or native memory over many calls, input
reference counts unchanged, MemoryError for what cannot be allocated, and
64-bit sizes and offsets."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np
import pytest

import fastsoftmax as fs


def _every_call(backend: str) -> list:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 33))
    mask = rng.random(x.shape) < 0.7
    y = fs.softmax(x, backend=backend)
    out = np.empty_like(x)
    return [
        (lambda: fs.softmax(x, backend=backend), (x,)),
        (lambda: fs.softmax(x, out=out, backend=backend), (x, out)),
        (lambda: fs.log_softmax(x, where=mask, temperature=2.0, backend=backend), (x, mask)),
        (lambda: fs.logsumexp(x, axis=0, keepdims=True, backend=backend), (x,)),
        (lambda: fs.logsumexp(x, b=mask, return_sign=True, backend=backend), (x, mask)),
        (lambda: fs.cross_entropy(x, [1, 2, 3, 4], backend=backend), (x,)),
        (lambda: fs.softmax_grad(y, x, backend=backend), (y, x)),
        (lambda: fs.log_softmax_grad(y, x, backend=backend), (y, x)),
    ]


@pytest.mark.parametrize("backend", fs.backends())
def test_reference_counts_of_inputs_unchanged(backend):
    for call, arrays in _every_call(backend):
        call()  # first calls may cache (numba's compiled functions)
        before = [sys.getrefcount(a) for a in arrays]
        for _ in range(50):
            call()
        assert [sys.getrefcount(a) for a in arrays] == before


def _traced_growth(call, repeats: int) -> int:
    """Bytes still allocated through Python after `repeats` calls, past the first."""
    for _ in range(100):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            call()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend", fs.backends())
def test_small_calls_do_not_grow_memory(backend):
    """tracemalloc flat over 1,000 calls of each function: a leak of 5 bytes a
    call shows (the million-call run, with RSS, is bench/test_memory.py)."""
    for call, _ in _every_call(backend):
        assert _traced_growth(call, 1000) < 4096


def test_large_calls_do_not_grow_memory():
    x = np.random.default_rng(3).standard_normal((256, 4096)).astype(np.float32)
    for backend in fs.backends():
        assert _traced_growth(lambda b=backend: fs.softmax(x, backend=b), 20) < 4096


try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy < 2
    from numpy.core.multiarray import get_handler_name


def _reuse_core():
    if "cpp" not in fs.backends():
        pytest.skip("the reused output block belongs to the compiled backend")
    from fastsoftmax import _core

    _core.release_reused_output()
    return _core


_ONE_STEP = [fs.softmax, fs.log_softmax, fs.logsumexp]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("function", _ONE_STEP)
def test_a_freed_large_output_is_reused_by_the_next_of_its_size(function, dtype):
    """A new output of 4 MiB and more is fresh memory (a page fault and a
    page of zeros per page); the default call reuses the last one freed."""
    core = _reuse_core()
    x = np.random.default_rng(5).standard_normal((64, 2**16)).astype(dtype)
    want = function(x, axis=-1, out=np.empty_like(x) if function is not fs.logsumexp else None)
    first = function(x, axis=-1)
    address, nbytes = first.ctypes.data, first.nbytes
    reused = nbytes >= 4 << 20
    assert first.flags.owndata
    assert get_handler_name(first) == (
        "fastsoftmax_reused_output" if reused else "default_allocator"
    )
    del first
    assert core.reused_output_bytes() == (nbytes if reused else 0)
    second = function(x, axis=-1)
    if reused:
        assert second.ctypes.data == address
    assert core.reused_output_bytes() == 0
    np.testing.assert_array_equal(second, want)
    # while `second` lives, its memory is never handed out again
    third = function(-x, axis=-1)
    assert third.ctypes.data != second.ctypes.data
    np.testing.assert_array_equal(second, want)
    del second, third
    assert core.release_reused_output() == (nbytes if reused else 0)


def test_only_one_output_block_is_kept():
    core = _reuse_core()
    a = fs.softmax(np.zeros((16, 2**16), np.float32))  # 4 MiB
    b = fs.softmax(np.zeros((32, 2**16), np.float32))  # 8 MiB
    small = fs.softmax(np.zeros((4, 2**16), np.float32))  # 1 MiB: never kept
    assert get_handler_name(small) == "default_allocator"
    del a
    assert core.reused_output_bytes() == 4 << 20
    del b, small  # replaces the 4 MiB block (which is freed)
    assert core.reused_output_bytes() == 8 << 20
    c = fs.softmax(np.ones((16, 2**16), np.float32))  # no block of its size
    assert core.reused_output_bytes() == 8 << 20
    c.resize((8, 2**16), refcheck=False)  # through the handler's realloc
    np.testing.assert_array_equal(c, np.full((8, 2**16), 2.0**-16, np.float32))
    del c  # 2 MiB after its resize: freed, not kept
    assert core.release_reused_output() == 8 << 20


@pytest.mark.parametrize("backend", fs.backends())
@pytest.mark.parametrize("function", [fs.softmax, fs.log_softmax])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_an_output_that_cannot_be_allocated_raises_memoryerror(function, axis, backend):
    # a 2**45-element view of one float: its result would take 128 TiB
    x = np.broadcast_to(np.float32(1.0), (2**25, 2**20))
    with pytest.raises(MemoryError):
        function(x, axis=axis, backend=backend)


@pytest.mark.slow
def test_sizes_and_offsets_past_2_31_elements():
    """Rows that all view one buffer (row stride 0) reach 2**31 elements and
    more without the memory: row and element offsets overflow 32 bits."""
    if "cpp" not in fs.backends():
        pytest.skip("the other backends build 8 GiB temporaries for this")
    rows, n = 2**15 + 1, 2**16 + 3  # 2,147,745,795 elements
    assert rows * n > 2**31
    row = np.linspace(-3, 3, n, dtype=np.float32)
    x = np.lib.stride_tricks.as_strided(row, shape=(rows, n), strides=(0, 4), writeable=False)
    result = fs.logsumexp(x, axis=-1, backend="cpp")
    assert result.shape == (rows,)
    np.testing.assert_array_equal(result, np.full(rows, fs.logsumexp(row)))
