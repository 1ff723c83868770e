"""The Numba backend on its own: its exp (ULP, edges, no libm call in the
hot loops), its layouts and threads, how its values compare with the other
backends, and the on-disk cache.

Which values agree bit for bit:
- numba with itself: a row gives the same bits in every layout (contiguous
  rows, column tiles of any width, gathered strided rows, in place, with or
  without a mask) and at every thread count (assert_array_equal).
- numba with cpp: not asserted. Both stay within the accuracy bound
  (conftest.assert_matches_oracle), but their exps use different polynomials
  and cpp's summation order depends on its SIMD level.
- numba with cpp and with the NumPy reference: the values that are exact by
  construction (special rows, masked entries, rows with one finite or one
  active element, the softmax of a constant row) are the same bits
  (assert_array_equal).

The rest of the suite runs every public function through backend="numba".
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from conftest import IMPLEMENTATIONS, assert_matches_oracle, random_logits, run_python

import fastsoftmax as fs

pytestmark = pytest.mark.skipif("numba" not in fs.backends(), reason="numba is not installed")


@pytest.fixture(scope="module")
def nb():
    from fastsoftmax import _backends

    return _backends.get("numba")


def ulp_error(got: np.ndarray, exact: np.ndarray, dtype) -> np.ndarray:
    """|got - exact| in units of the spacing of dtype at the exact value
    (the subnormal spacing below the smallest normal)."""
    spacing = np.spacing(np.abs(exact.astype(dtype))).astype(exact.dtype)
    return np.abs(got.astype(exact.dtype) - exact) / spacing


# The measured maxima (docs/numba_notes.md) are 1.007 ULP on this sweep
# (1.016 over every float32 of [-104, 0]) and 0.985 ULP (float64); the
# bounds leave room for another CPU's FMA choice.


def test_exp_float32_dense_sweep(nb):
    d = -np.linspace(0, 104, 4_000_001, dtype=np.float32)
    d = np.concatenate([d, -(np.float32(2.0) ** -np.arange(1, 40, dtype=np.float32))])
    err = ulp_error(nb.exp_nonpositive(d), np.exp(d.astype(np.float64)), np.float32)
    assert err.max() <= 1.05, (err.max(), d[np.argmax(err)])


def test_exp_float64_random_points(nb):
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("long double is double here: no higher-precision reference")
    rng = np.random.default_rng(41)
    d = np.concatenate(
        [
            -rng.uniform(0, 746, 1_000_000),
            -rng.uniform(0, 1, 100_000),
            -np.exp2(-np.arange(1.0, 60.0)),
            [-745.0, -708.4, -708.39, -707.0],
        ]
    )
    err = ulp_error(nb.exp_nonpositive(d), np.exp(d.astype(np.longdouble)), np.float64)
    assert err.max() <= 1.0, (err.max(), d[np.argmax(err)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_edges(nb, dtype):
    d = np.array([0.0, -0.0, -np.inf, -1e6, -np.finfo(dtype).tiny, -1e-30], dtype=dtype)
    got = nb.exp_nonpositive(d)
    np.testing.assert_array_equal(got, [1, 1, 0, 0, 1, 1])
    tiny = np.finfo(dtype).tiny
    subnormal = nb.exp_nonpositive(np.array([np.log(tiny) - 3], dtype=dtype))[0]
    assert 0 < subnormal < tiny  # rounded, not flushed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_range_exp_is_the_same_bits(nb, dtype):
    """Rows whose every exp is normal take the shorter exp: same bits."""
    limit = -87.0 if dtype == np.float32 else -707.0
    d = np.linspace(limit, 0, 1_000_001).astype(dtype)
    np.testing.assert_array_equal(nb.exp_nonpositive(d, normal=True), nb.exp_nonpositive(d))


def _libm_exp_calls(asm: str) -> list[str]:
    """References to libm's exp in assembly: numba loads the address
    (movabsq $expf, %reg) and calls through the register; a small code
    model would call it by name (call expf@PLT)."""
    return re.findall(r"(?:\$|call[a-z]*\s+)_*exp(?:f|l)?(?:_finite)?\b(?!\.)", asm)


def test_no_libm_exp_in_the_kernels(nb):
    """No per-element call into the C math library: the row path (all of
    it: scan, exp and sums, log variants, special and wide rows) and the exp
    never reference exp/expf, and the exp loop is vectorized (packed
    multiplies). Compiled afresh here: numba cannot show the assembly of
    code loaded from its cache."""
    import numba

    options = {"nogil": True, "error_model": "numpy"}
    rows = numba.njit(**options)(nb._softmax_rows.py_func)
    exp = numba.njit(**options)(nb._exp_nonpositive_array.py_func)
    for dtype in (np.float32, np.float64):
        x = random_logits(np.random.default_rng(3), (2, 1, 40), dtype)
        rows(x, np.empty_like(x), None, 1.0, False, 0, 1)
        exp(-np.abs(x[0, 0]), np.empty_like(x[0, 0]), False)
    for kernel in (rows, exp):
        for signature in kernel.signatures:
            asm = kernel.inspect_asm(signature)
            assert not _libm_exp_calls(asm), (kernel, signature, _libm_exp_calls(asm)[:3])
    for signature in exp.signatures:
        packed = "mulps" if "float32" in str(signature) else "mulpd"
        assert packed in exp.inspect_asm(signature), signature


def test_the_asm_check_sees_a_libm_call():
    """The check above would catch a plain np.exp loop."""
    numba = pytest.importorskip("numba")

    @numba.njit
    def plain(x, out):
        for k in range(x.shape[0]):
            out[k] = np.exp(x[k])

    x = np.zeros(4, np.float32)
    plain(x, x.copy())
    assert _libm_exp_calls(plain.inspect_asm(plain.signatures[0]))


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("masked", [False, True])
def test_column_tiles_match_rows_bit_for_bit(kind, masked):
    """A reduction over axis 0 runs across column tiles, in the summation
    order of the row path: the same bits as the contiguous copy, over
    several sum chunks (1300 > 512), several tiles (2100 > 2048), the
    masked and the in-place paths."""
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        for shape in ((1300, 70), (600, 257), (3, 1000), (40, 2100)):
            x = random_logits(rng, shape, dtype)
            where = rng.random(shape) < 0.8 if masked else None
            f = getattr(fs, kind)
            got = f(x, axis=0, where=where, backend="numba")
            contiguous = np.ascontiguousarray(x.T)
            mask_t = None if where is None else np.ascontiguousarray(where.T)
            want = f(contiguous, axis=-1, where=mask_t, backend="numba")
            np.testing.assert_array_equal(got, want if kind == "logsumexp" else want.T)
            if kind != "logsumexp" and not masked:
                y = x.copy()
                f(y, axis=0, out=y, backend="numba")
                np.testing.assert_array_equal(y, want.T)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_terms_below_half_an_ulp_are_not_lost(kind, dtype):
    """A running sum near 1 rounds away every term below half an ulp added to
    it; the sums run in short blocks so that the loss stays well inside the
    accuracy bound (with 64 additions a slot, n = 512 broke it). Rows: one
    logit at 0 and the rest at log(0.49 eps), and the same with a term near
    1 in every slot; by rows and by column tiles (axis 0), same bits."""
    eps = float(np.finfo(dtype).eps)
    f = getattr(fs, kind)
    for n in (129, 512, 520, 1024):
        lone = np.full(n, np.log(0.49 * eps))
        lone[0] = 0
        every_slot = lone.copy()
        every_slot[1:8] = np.log1p(-0.4 * eps)
        x = np.stack([lone, every_slot]).astype(dtype)
        y = f(x, backend="numba")
        assert_matches_oracle(kind, y, x)
        by_columns = f(np.ascontiguousarray(x.T), axis=0, backend="numba")
        np.testing.assert_array_equal(by_columns, y if kind == "logsumexp" else y.T)


@pytest.fixture
def two_threads(nb):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    previous = fs.get_num_threads()
    yield
    fs.set_num_threads(previous)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_prange_results_do_not_depend_on_threads(nb, two_threads, kind, axis):
    import numba

    x = random_logits(np.random.default_rng(10), (512, 600), np.float32)
    f = getattr(fs, kind)
    fs.set_num_threads(1)
    serial = f(x, axis=axis, backend="numba")
    fs.set_num_threads(2)
    assert numba.get_num_threads() == 2  # fastsoftmax.set_num_threads governs numba
    parallel = f(x, axis=axis, backend="numba")
    kernel = {
        ("softmax", -1): nb._softmax_rows_parallel,
        ("softmax", 0): nb._softmax_tiles_parallel,
        ("logsumexp", -1): nb._logsumexp_rows_parallel,
        ("logsumexp", 0): nb._logsumexp_tiles_parallel,
    }[("logsumexp" if kind == "logsumexp" else "softmax", axis)]
    assert kernel.signatures, "the parallel kernel did not run"
    np.testing.assert_array_equal(parallel, serial)


def test_small_inputs_stay_serial(nb, two_threads):
    fs.set_num_threads(2)
    assert nb._blocks(64 * 1000) == 1
    assert nb._blocks(1 << 20) == 2


def test_calls_from_many_threads_at_once(two_threads):
    from concurrent.futures import ThreadPoolExecutor

    fs.set_num_threads(2)
    rng = np.random.default_rng(11)
    inputs = [random_logits(rng, (300, 1000), np.float32) for _ in range(4)]
    want = [fs.softmax(x, backend="numba") for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda x: fs.softmax(x, backend="numba"), inputs * 3))
    for i, y in enumerate(got):
        np.testing.assert_array_equal(y, want[i % len(inputs)])


def _rows_with_every_path(dtype, rows: int, n: int) -> np.ndarray:
    """Random rows, with rows that take each path of the numba kernels:
    subnormal and zero terms (rows 1100 .. 1109), special rows (NaN, +inf,
    all -inf) and rows that are wide when T > 1 (the last rows)."""
    rng = np.random.default_rng(12)
    x = random_logits(rng, (rows, n), dtype)
    x[1100:1110] *= 400
    x[-1, 5] = np.nan
    x[-2, 7] = np.inf
    x[-3] = -np.inf
    x[-4, ::3] = -np.inf
    big = np.finfo(dtype).max * 0.75
    x[-5, 0], x[-5, 1] = big, -big  # wide: the spread overflows
    x[-6, ::2] = big  # may be wide (a max that large), is not
    return x


def _strided_copy(a: np.ndarray) -> np.ndarray:
    """A view of a copy of a with every axis strided (every other element of
    a larger array), so that neither axis is contiguous."""
    holder = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
    holder[:, ::2] = a
    return holder[:, ::2]


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_a_row_gives_the_same_bits_in_every_layout_and_thread_count(
    nb, kind, dtype, masked, temperature
):
    """numba agrees with itself bit for bit. 2100 rows of 600 (two sum
    chunks, several sum blocks), laid out as contiguous rows (row path),
    as columns of a C array (column tiles: 2048 + 52 rows on one thread,
    1050 + 1050 on two, so the tiles take the normal, subnormal and
    row-by-row paths), as strided rows and strided columns (gathered into a
    buffer), and in place; on one thread and on two (prange)."""
    import numba

    x = _rows_with_every_path(dtype, 2100, 600)
    where = np.random.default_rng(13).random(x.shape) < 0.9 if masked else None
    if where is not None:
        where[-7] = False  # nothing active
    f = getattr(fs, kind)

    def call(data, mask, axis, out=None):
        options = {} if out is None else {"out": out}
        with np.errstate(invalid="ignore"):
            got = f(
                data, axis=axis, where=mask, temperature=temperature, backend="numba", **options
            )
        return got if axis == -1 or kind == "logsumexp" else got.T

    def layouts():
        mask_t = None if where is None else np.ascontiguousarray(where.T)
        yield "rows", call(x, where, -1)
        yield "column tiles", call(np.ascontiguousarray(x.T), mask_t, 0)
        strided_mask = None if where is None else _strided_copy(where)
        yield "strided rows", call(_strided_copy(x), strided_mask, -1)
        strided_mask_t = None if where is None else _strided_copy(mask_t)
        yield "strided columns", call(_strided_copy(x.T), strided_mask_t, 0)
        if kind != "logsumexp":
            y = x.copy()
            yield "rows in place", call(y, where, -1, out=y)
            y = np.ascontiguousarray(x.T)
            yield "column tiles in place", call(y, mask_t, 0, out=y)

    previous = fs.get_num_threads()
    want = call(x, where, -1)
    try:
        for threads in [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]:
            fs.set_num_threads(threads)
            for layout, got in layouts():
                np.testing.assert_array_equal(got, want, err_msg=f"{layout}, {threads} threads")
    finally:
        fs.set_num_threads(previous)
    ordinary = slice(0, -7)  # special and wide rows: see test_semantics.py
    assert_matches_oracle(
        kind,
        want[ordinary],
        x[ordinary],
        temperature=temperature,
        where=None if where is None else where[ordinary],
    )


def test_tile_scan_names_the_path_of_a_tile(nb):
    """_tile_scan's result says how a tile is computed: _TILE_NORMAL when
    every exp is normal, _TILE_SUBNORMAL when one may be subnormal or 0,
    _TILE_BY_ROWS when a row is special or may be wide (T > 1)."""
    import numba

    scan = numba.njit(nogil=True, error_model="numpy")(nb._tile_scan.py_func)

    def kind(rows, temperature=1.0):
        columns = np.ascontiguousarray(np.asarray(rows, np.float32).T)  # (n, w)
        x = columns.reshape(1, *columns.shape).transpose(0, 2, 1)  # (1, w, n), rows strided
        w = x.shape[1]
        m = np.empty(w, np.float32)
        scale = np.float32(1 / temperature)
        return scan(x, None, 0, 0, w, temperature, scale, m, np.empty(0, np.bool_))

    normal = [[0.0, 1.0], [-3.0, 2.0], [5.0, 4.0]]
    assert kind(normal) == nb._TILE_NORMAL
    assert kind([[0.0, 1.0], [-100.0, 2.0]]) == nb._TILE_SUBNORMAL
    assert kind([[0.0, np.nan], [1.0, 2.0]]) == nb._TILE_BY_ROWS
    assert kind([[-np.inf, -np.inf], [1.0, 2.0]]) == nb._TILE_BY_ROWS
    assert kind([[3e38, 1.0], [-3e38, 2.0]], temperature=2.0) == nb._TILE_BY_ROWS
    assert len({nb._TILE_NORMAL, nb._TILE_SUBNORMAL, nb._TILE_BY_ROWS}) == 3


@pytest.fixture
def each_cpp_level():
    """A function that calls body(level) once per SIMD level of the compiled
    backend, that level selected (none if the backend is not built)."""
    levels = [level for name, level in IMPLEMENTATIONS if name == "cpp"]
    if not levels:
        yield lambda body: None
        return
    from fastsoftmax import _backends

    cpp = _backends.get("cpp")
    previous = cpp.simd_level()

    def run(body):
        for level in levels:
            cpp.set_simd_level(level)
            body(level)

    try:
        yield run
    finally:
        cpp.set_simd_level(previous)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_and_cpp_agree_within_the_bound_not_bit_for_bit(each_cpp_level, kind, dtype):
    """numba against cpp (every SIMD level): each within the accuracy bound
    of the higher-precision oracle, so they differ from each other by at
    most twice the bound. Bit equality is deliberately not asserted: the
    exps use different polynomials and cpp's summation order depends on
    the SIMD level's vector width (in-level agreement across layouts and
    threads is what test_layout.py and test_backends.py assert)."""
    if "cpp" not in fs.backends():
        pytest.skip("the compiled backend is not built")
    rng = np.random.default_rng(14)
    f = getattr(fs, kind)
    cases = [
        random_logits(rng, shape, dtype, scale)
        for shape, scale in (((64, 3), 1.0), ((40, 33), 3.0), ((8, 1000), 10.0), ((2, 5000), 3.0))
    ]
    for x in cases:
        for axis in (-1, 0):
            assert_matches_oracle(kind, f(x, axis=axis, backend="numba"), x, axis=axis)

    def check(level):
        for x in cases:
            for axis in (-1, 0):
                assert_matches_oracle(kind, f(x, axis=axis, backend="cpp"), x, axis=axis)

    each_cpp_level(check)


def _exact_rows(dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose every value is exact by construction, and a mask for them
    (the last two rows random: all masked, and one element active)."""
    rng = np.random.default_rng(n)
    rows = [np.full(n, np.nan)]
    row = rng.standard_normal(n)
    row[n // 2] = np.nan
    rows.append(row)
    row = rng.standard_normal(n)
    row[0] = np.inf
    rows.append(row)
    row = rng.standard_normal(n)
    row[0], row[-1] = np.inf, np.nan
    rows.append(row)
    rows.append(np.full(n, -np.inf))
    row = np.full(n, -np.inf)
    row[n // 2] = 1.5
    rows.append(row)
    rows.append(rng.standard_normal(n))
    rows.append(rng.standard_normal(n))
    x = np.array(rows, dtype)
    mask = np.ones(x.shape, bool)
    mask[-2] = False
    mask[-1] = False
    mask[-1, n // 3] = True
    return x, mask


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 8, 17, 100, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_exact_values_are_the_same_bits_in_every_backend(
    each_cpp_level, kind, dtype, n, temperature
):
    """Where the result is exact by construction, numba, the NumPy reference
    and cpp (every SIMD level) give the same bits: special rows (NaN, +inf,
    +inf with NaN, all -inf: the scipy.special fills), a row with one finite
    element (1 and 0, or 0 and -inf; its logsumexp is the element / T),
    masked entries (0 or -inf), a row with nothing active and a row with
    one active element; the softmax of a constant row (1/n)."""
    x, mask = _exact_rows(dtype, n)
    f = getattr(fs, kind)
    exact = slice(0, -2)  # without a mask the last two rows are random
    with np.errstate(invalid="ignore"):
        numba_plain = f(x, temperature=temperature, backend="numba")
        numba_masked = f(x, temperature=temperature, where=mask, backend="numba")
        if kind == "softmax":
            constant = np.full((2, n), 0.75, dtype)
            numba_constant = f(constant, temperature=temperature, backend="numba")
            np.testing.assert_array_equal(numba_constant, dtype(1 / n))

    def compare(name):
        with np.errstate(invalid="ignore"):
            plain = f(x, temperature=temperature, backend=name)
            masked = f(x, temperature=temperature, where=mask, backend=name)
            np.testing.assert_array_equal(numba_plain[exact], plain[exact], err_msg=name)
            np.testing.assert_array_equal(numba_masked, masked, err_msg=name)
            if kind == "softmax":
                np.testing.assert_array_equal(
                    numba_constant, f(constant, temperature=temperature, backend=name)
                )

    compare("numpy")
    each_cpp_level(lambda level: compare("cpp"))


_CACHE_PROBE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import fastsoftmax as fs
    assert "numba" not in sys.modules
    x = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    start = time.perf_counter()
    fs.softmax(x, backend="numba")
    seconds = time.perf_counter() - start
    from fastsoftmax import _numba_backend as nb
    stats = nb._softmax_rows.stats
    print(json.dumps([seconds, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
    """
)


def test_a_second_process_does_not_compile_again(tmp_path):
    """cache=True: the first process compiles and writes the cache, the
    next one loads it (a cache hit, no miss) instead of compiling."""
    import json

    def run() -> tuple[float, int, int]:
        out = run_python(_CACHE_PROBE, timeout=600, NUMBA_CACHE_DIR=str(tmp_path))
        return tuple(json.loads(out.strip().splitlines()[-1]))

    _, first_hits, first_misses = run()
    assert first_misses >= 1 and first_hits == 0
    assert list(tmp_path.rglob("*.nbi")) and list(tmp_path.rglob("*.nbc"))
    _, hits, misses = run()
    assert hits >= 1 and misses == 0
