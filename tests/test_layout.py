"""Layouts (README, Semantics): C, Fortran, strided, negative strides, unaligned and
byte-swapped data give the values of a contiguous copy; the input is never
modified; out= and in place; partial overlap is handled."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import random_logits

import fastsoftmax as fs

KINDS = ["softmax", "log_softmax", "logsumexp"]


def _layouts(dtype):
    rng = np.random.default_rng(21)
    base = random_logits(rng, (6, 7, 9), dtype)
    big = random_logits(rng, (12, 15, 20), dtype)
    yield "C", base
    yield "F", np.asfortranarray(base)
    yield "strided", big[::2, 1::2, ::2]
    yield "negative", big[::-2, :, ::-3]
    yield "transposed", big.transpose(2, 0, 1)
    yield "broadcast", np.broadcast_to(base[:1], (4, 7, 9))
    swapped = base.astype(base.dtype.newbyteorder(">" if base.dtype.isnative else "<"))
    yield "byteswapped", swapped
    raw = np.zeros(base.nbytes + 1, dtype=np.uint8)
    unaligned = raw[1:].view(dtype).reshape(base.shape)
    unaligned[...] = base
    yield "unaligned", unaligned
    yield (
        "3d-to-4d-strided",
        np.lib.stride_tricks.as_strided(
            big,
            shape=(3, 2, 4, 5),
            strides=(
                big.strides[0] * 4,
                big.strides[0] * 2,
                big.strides[1] * 3,
                big.strides[2] * 4,
            ),
        ),
    )


LAYOUTS = [name for name, _ in _layouts(np.float32)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1, -1, (0, 2), None])
def test_layouts_give_the_values_of_a_contiguous_copy(backend, dtype, layout, kind, axis):
    x = dict(_layouts(dtype))[layout]
    if layout == "3d-to-4d-strided" and axis == 1:
        axis = 2
    before = x.copy()
    f = getattr(fs, kind)
    got = f(x, axis=axis, backend=backend)
    want = f(np.ascontiguousarray(x), axis=axis, backend=backend)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, before)  # input untouched


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, -1, None])
def test_in_place(backend, dtype, kind, axis):
    x = random_logits(np.random.default_rng(22), (17, 33), dtype)
    want = getattr(fs, kind)(x, axis=axis, backend=backend)
    for y in (x.copy(), np.asfortranarray(x), x.copy()[::-1][::-1]):
        assert getattr(fs, kind)(y, axis=axis, out=y, backend=backend) is y
        np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("n", [37, 200, 1500])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_in_place_with_a_mask_gives_the_values_of_a_copy(backend, dtype, kind, n, temperature):
    # In-cache rows in groups (11 rows: a full group and a remainder), tails, a mask,
    # a temperature: the row passes write y before its last pass (log_softmax's d),
    # so in place they overwrite x first.
    rng = np.random.default_rng(23)
    x = random_logits(rng, (11, n), dtype)
    where = rng.random((11, n)) < 0.8
    where[3] = False
    f = getattr(fs, kind)
    want = f(x, where=where, temperature=temperature, backend=backend)
    y = x.copy()
    assert f(y, where=where, temperature=temperature, out=y, backend=backend) is y
    np.testing.assert_array_equal(y, want)
    masked = 0.0 if kind == "softmax" else -np.inf
    assert np.all(want[~where] == masked)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [40, 64, 128, 256, 300, 1024, 5000])
def test_rows_in_groups_give_the_values_of_single_rows(backend, dtype, kind, n):
    # In-cache rows go in groups, and log_softmax's last pass of one group rides in
    # the next group's exp loops: special rows among them, a short last group.
    rng = np.random.default_rng(24)
    x = random_logits(rng, (21, n), dtype)
    x[3, 5] = np.nan
    x[9] = -np.inf
    x[10, 0] = np.inf
    x[17, :: n // 4] = x[17].max()
    # A row with results below the normal range: its group takes the careful exp
    # form for every row, which must give the other rows their usual bits.
    x[13, 1] = x[13].max() - (200 if dtype == np.float32 else 1000)
    f = getattr(fs, kind)
    got = f(x, axis=-1, backend=backend)
    for r in range(len(x)):
        np.testing.assert_array_equal(got[r], f(x[r], backend=backend), err_msg=f"row {r}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [64, 128, 300, 1024])
def test_rows_scanned_ahead_give_the_values_of_single_rows(backend, dtype, kind, n):
    # softmax's groups scan the next group's rows in their exp loops: rows that
    # turn out special or too wide for a temperature there, zero maxima of both
    # signs, in every group but the first, with a temperature above 1.
    rng = np.random.default_rng(25)
    x = random_logits(rng, (30, n), dtype) - 4
    big = np.finfo(dtype).max
    x[12, 0], x[12, 1] = big / 2, -big / 2  # (x - max) / T overflows: the wide path
    x[15:17] = -np.abs(x[15:17]) - 1  # zero maxima
    x[15, 0], x[15, 7] = -0.0, 0.0
    x[16, 3] = -0.0
    x[21, n // 2] = np.nan
    x[22, -1] = np.inf
    f = getattr(fs, kind)
    got = f(x, axis=-1, temperature=2.5, backend=backend)
    assert x[15].max() == 0 and x[16].max() == 0
    assert np.all(np.isnan(got[21]))
    for r in range(len(x)):
        want = f(x[r], temperature=2.5, backend=backend)
        np.testing.assert_array_equal(got[r], want, err_msg=f"row {r}")
        assert np.array_equal(np.signbit(got[r]), np.signbit(want)), f"row {r}"


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_out_with_its_own_layout(backend, dtype, kind):
    x = random_logits(np.random.default_rng(23), (8, 10), dtype)
    want = getattr(fs, kind)(x, backend=backend)
    holder = np.zeros((10, 16), dtype=dtype)
    out = holder.T[::2, ::-1][:, :10]
    assert out.shape == x.shape
    assert getattr(fs, kind)(x, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    swapped = np.empty(x.shape, dtype=dtype)
    getattr(fs, kind)(x, out=swapped, backend=backend)
    np.testing.assert_array_equal(swapped, want)


@pytest.mark.parametrize("shift", [1, 3, -2])
def test_partial_overlap_with_out_is_handled(backend, dtype, shift):
    """out overlapping x without being x: the result is what a copy gives."""
    buffer = random_logits(np.random.default_rng(24), (40,), dtype)
    x = buffer[5:25].reshape(4, 5)
    want = fs.softmax(x.copy(), backend=backend)
    out = buffer[5 + shift : 25 + shift].reshape(4, 5)
    fs.softmax(x, out=out, backend=backend)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("shift", [1, 3, -2])
@pytest.mark.parametrize(("axis", "keepdims"), [((), False), (-1, True), (0, False)])
def test_logsumexp_out_overlapping_x(backend, dtype, shift, axis, keepdims):
    """Found by the fuzzer: logsumexp wrote out= while still reading an x that
    out overlapped (every element a row of its own: 905 of 908 wrong)."""
    buffer = random_logits(np.random.default_rng(27), (60,), dtype)
    x = buffer[5:25].reshape(4, 5)
    want = fs.logsumexp(x.copy(), axis=axis, keepdims=keepdims, backend=backend)
    out = buffer[5 + shift :][: want.size].reshape(want.shape)
    assert fs.logsumexp(x, axis=axis, keepdims=keepdims, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)


def test_float16_out_and_in_place(backend):
    x = random_logits(np.random.default_rng(25), (5, 30), np.float16)
    want = fs.softmax(x, backend=backend)
    y = x.copy()
    fs.softmax(y, out=y, backend=backend)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("kind", KINDS)
def test_input_never_modified(backend, kind):
    rng = np.random.default_rng(26)
    for x in (
        random_logits(rng, (9, 65), np.float32),
        np.array([[np.inf, 1.0, np.nan], [-np.inf, -np.inf, 2.0]]),
        random_logits(rng, (3, 4), np.float16),
    ):
        mask = rng.random(x.shape) < 0.5
        x_before, mask_before = x.copy(), mask.copy()
        with np.errstate(invalid="ignore"):
            getattr(fs, kind)(x, where=mask, temperature=0.7, backend=backend)
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(mask, mask_before)


def test_non_last_axis_is_not_transposed(backend):
    """axis=0 of a C array reads through strides: the kernel gets a
    (1, inner, n) view whose reduction stride is the row length."""
    from fastsoftmax import _layout

    x = np.ones((100, 64), dtype=np.float32)
    views = _layout.rows3([x, np.empty_like(x)], 0)
    assert views is not None and views[0].shape == (1, 64, 100)
    assert views[0].strides[1:] == (4, 256)
    assert np.shares_memory(views[0], x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 5, 8, 13, 16, 31, 32, 33, 64, 65, 1024, 1500, 2100])
@pytest.mark.parametrize("width", [2, 7, 33, 70])
def test_non_last_axis_gives_the_values_of_rows(backend, dtype, kind, n, width):
    """A reduction down columns (the column kernels: lanes are columns) gives
    bit for bit the values of the same data laid out as rows, including
    columns that need the special-value path and columns whose smallest
    terms are subnormal."""
    rng = np.random.default_rng(n * 1000 + width)
    x = random_logits(rng, (n, width), dtype)
    x[:, width // 3] *= 400  # subnormal and zero terms
    if n > 1 and width > 4:
        x[n // 2, 1] = np.nan
        x[0, 3] = np.inf
        x[:, 4] = -np.inf
    f = getattr(fs, kind)
    with np.errstate(invalid="ignore"):
        got = f(x, axis=0, backend=backend)
        rows = f(np.ascontiguousarray(x.T), axis=-1, backend=backend)
    np.testing.assert_array_equal(got, rows if kind == "logsumexp" else rows.T)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 7, 32, 33, 129, 300])
@pytest.mark.parametrize("width", [8, 37, 1100])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_wide_column_tiles_give_the_values_of_rows(backend, dtype, kind, n, width, temperature):
    """Columns without special values in tiles of many columns (the column
    sweep: per-column state in memory, rows read in order; partial and whole
    chunks of rows, a partial last vector, several tiles) give bit for bit the
    values of the same data laid out as rows, also in place."""
    rng = np.random.default_rng(n * 7919 + width)
    x = random_logits(rng, (n, width), dtype)
    x[:, width // 2] *= 400  # subnormal and zero terms
    f = getattr(fs, kind)
    got = f(x, axis=0, temperature=temperature, backend=backend)
    rows = f(np.ascontiguousarray(x.T), axis=-1, temperature=temperature, backend=backend)
    np.testing.assert_array_equal(got, rows if kind == "logsumexp" else rows.T)
    if kind != "logsumexp":
        y = x.copy()
        f(y, axis=0, temperature=temperature, out=y, backend=backend)
        np.testing.assert_array_equal(y, rows.T)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("special", ["nan", "inf", "all_minus_inf", "wide"])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 3.0])
def test_a_column_needing_the_row_path_leaves_the_values_of_rows(
    backend, dtype, kind, special, temperature
):
    """A column tile holding a column that needs the row path (NaN, +inf, all
    -inf, or a spread that overflows with T > 1) is computed as rows; its
    neighbour tiles by the column sweep. Both give bit for bit the values of
    the same data laid out as rows, also in place."""
    rng = np.random.default_rng(17)
    n, width = 40, 2100  # float32: tiles of 1024 columns, the special one in the second
    x = random_logits(rng, (n, width), dtype)
    x[:, 1500] *= 400  # subnormal terms in the same tile
    big = np.finfo(dtype).max / 2
    if special == "nan":
        x[7, 1300] = np.nan
    elif special == "inf":
        x[7, 1300] = np.inf
    elif special == "all_minus_inf":
        x[:, 1300] = -np.inf
    else:
        x[7, 1300], x[8, 1300] = big, -big
    f = getattr(fs, kind)
    with np.errstate(invalid="ignore", over="ignore"):
        got = f(x, axis=0, temperature=temperature, backend=backend)
        rows = f(np.ascontiguousarray(x.T), axis=-1, temperature=temperature, backend=backend)
        np.testing.assert_array_equal(got, rows if kind == "logsumexp" else rows.T)
        if kind != "logsumexp":
            y = x.copy()
            f(y, axis=0, temperature=temperature, out=y, backend=backend)
            np.testing.assert_array_equal(y, rows.T)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 96, 128])
def test_short_rows_do_not_depend_on_their_neighbours(backend, dtype, kind, n):
    """Short rows are computed a few at a time (their chains interleaved);
    each row gets the bits it gets alone, whatever its neighbours are:
    special rows (NaN, +inf, all -inf), rows with subnormal terms, and
    ordinary rows mixed in one group. Where groups take their logs in pairs,
    a pair may hold a group with a special row beside one without (rows 8 to
    15 with groups of four)."""
    rng = np.random.default_rng(n)
    x = random_logits(rng, (19, n), dtype)
    x[2, 0] = np.nan
    x[5] = -np.inf
    x[6, -1] = np.inf
    x[8] *= 300  # subnormal and zero terms beside ordinary rows
    x[13, n // 2] = np.nan
    f = getattr(fs, kind)
    with np.errstate(invalid="ignore"):
        together = f(x, backend=backend)
        alone = [f(x[r : r + 1], backend=backend)[0] for r in range(x.shape[0])]
    np.testing.assert_array_equal(together, np.stack(alone))


_CPP_LEVELS = fs.info()["simd_levels"] if "cpp" in fs.backends() else []


@contextlib.contextmanager
def _at_level(level):
    """The compiled backend at one SIMD level for the block, then back."""
    from fastsoftmax import _backends

    cpp = _backends.get("cpp")
    previous = cpp.simd_level()
    cpp.set_simd_level(level)
    try:
        yield
    finally:
        cpp.set_simd_level(previous)


@pytest.mark.parametrize("level", _CPP_LEVELS)
@pytest.mark.parametrize("kind", KINDS)
def test_short_rows_give_the_bits_of_the_general_passes(level, dtype, kind):
    """Rows of at most four vectors (softmax: eight with 32 vector registers)
    go through the short-row kernels, which fold their sums for several rows
    at once; a mask that keeps every element sends the same rows through the
    general three passes, whose order the short rows must follow exactly.
    Rows of two or four blocks of four vectors (128 and 256 floats with
    AVX-512, 64 and 128 with AVX2) take an exp pass compiled for their length,
    which must add in that order too."""
    with _at_level(level):
        rng = np.random.default_rng(41)
        f = getattr(fs, kind)
        lengths = [1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 80, 96, 127, 128]
        for n in [*lengths, 256]:
            x = random_logits(rng, (37, n), dtype) * 5
            for temperature in (1.0, 0.7):
                short = f(x, axis=-1, temperature=temperature)
                general = f(x, axis=-1, temperature=temperature, where=np.ones(x.shape, bool))
                np.testing.assert_array_equal(short, general, err_msg=f"n={n} T={temperature}")


@pytest.mark.parametrize("level", _CPP_LEVELS)
@pytest.mark.parametrize("kind", KINDS)
def test_runs_of_tiny_terms_give_the_bits_of_the_careful_exp(level, dtype, kind):
    """Rows whose spread reaches below the normal range take the careful exp
    only for the blocks of four vectors that need it: blocks all above the
    normal range take the fast form, blocks all below the clamp are 0. A mask
    that keeps every element sends the same rows through the masked loop,
    whose exp is the careful form for every vector: the same bits. Rows of a
    causal mask (-inf from a diagonal on), runs of terms about 95, 200, 725
    and 2000 below the max (95 mixes subnormal and normal float terms, 725
    double ones), starting anywhere in a block."""
    with _at_level(level):
        rng = np.random.default_rng(47)
        f = getattr(fs, kind)
        rows, n = 96, 300
        x = random_logits(rng, (rows, n), dtype)
        x[np.triu_indices(32, 1, n)] = -np.inf  # causal rows 0..31
        for r in range(32, rows):
            start = int(rng.integers(0, n))
            stop = int(rng.integers(start, n + 1))
            x[r, start:stop] -= (95.0, 200.0, 725.0, 2000.0)[r % 4]
        for temperature in (1.0, 0.7):
            plain = f(x, axis=-1, temperature=temperature)
            masked = f(x, axis=-1, temperature=temperature, where=np.ones(x.shape, bool))
            np.testing.assert_array_equal(plain, masked, err_msg=f"T={temperature}")


@pytest.mark.parametrize("level", _CPP_LEVELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [100, 300, 1000, 4100])
def test_rows_ending_in_zero_terms_give_the_bits_of_the_whole_exp_pass(level, dtype, kind, n):
    """A logsumexp row whose last terms are all exp(d) = +0 (a causal mask's
    -inf, an attention mask's -1e4 or finfo.min) ends its exp loop at the
    last block of four vectors holding a nonzero term: its sums must keep
    the bits of the whole pass, and so must every kind's rows beside such
    rows. The masked loop (a mask that keeps every element) never stops
    early; a row alone carries no other row's pass and scans none ahead. The
    zeros start at and beside the block and chunk boundaries, inside the
    last partial vector and nowhere."""
    with _at_level(level):
        rng = np.random.default_rng(53)
        f = getattr(fs, kind)
        starts = sorted(
            (
                {1, 7, 8, 9, 31, 32, 33, 64, 127, 128, 129, 193, 256, 257}
                | {n // 2, n - 33, n - 9, n - 8, n - 1, n}
            )
            & set(range(1, n + 1))
        )
        fills = (-np.inf, -1e4, np.finfo(dtype).min)
        x = random_logits(rng, (len(starts) * len(fills), n), dtype)
        for r, (start, fill) in enumerate((s, v) for v in fills for s in starts):
            x[r, start:] = fill
        for temperature in (1.0, 0.7):
            plain = f(x, axis=-1, temperature=temperature)
            masked = f(x, axis=-1, temperature=temperature, where=np.ones(x.shape, bool))
            np.testing.assert_array_equal(plain, masked, err_msg=f"T={temperature}")
            for r in range(x.shape[0]):
                alone = f(x[r : r + 1], axis=-1, temperature=temperature)
                np.testing.assert_array_equal(plain[r : r + 1], alone, err_msg=f"row {r}")


@pytest.mark.parametrize("level", _CPP_LEVELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [64, 100, 128, 192, 256, 300, 1000, 4100])
def test_maxima_in_any_block_give_the_bits_of_the_masked_loop(level, dtype, kind, n):
    """log_softmax and logsumexp count the elements at the max apart from the
    other terms. The unmasked exp loop tests each block of four vectors for
    an element at the max (its largest d against 0) and adds a block without
    one as it is; the masked loop (a mask that keeps every element) compares
    every vector: the same sums and count. The max in each block, several
    maxima in different blocks and in one vector, +0 and -0 maxima, maxima
    filling blocks, and a temperature under which d rounds to -0 for elements
    just below the max. A NaN in the lane of the max in a later vector of its
    block hides the max from the test: the row still comes out as the NaN,
    with the bits it has where the NaN sits beside the max."""
    with _at_level(level):
        rng = np.random.default_rng(61)
        f = getattr(fs, kind)
        positions = sorted({*range(0, n, 16), n - 1, n // 2})
        x = random_logits(rng, (len(positions) + 5, n), dtype)
        for r, j in enumerate(positions):
            x[r, j] = x[r].max() + 1  # one max, in each block in turn
        r = len(positions)
        x[r, :: max(n // 7, 1)] = x[r].max()  # several maxima, blocks apart
        x[r + 1, 8:12] = x[r + 1].max()  # several in one vector
        x[r + 2] = -np.abs(x[r + 2]) - 1
        x[r + 2, [n // 3, 2 * n // 3]] = (0.0, -0.0)  # +0 and -0 maxima
        x[r + 3] = 0.0
        x[r + 3, 1::2] = -np.finfo(dtype).smallest_subnormal  # d is -0 at T = 1e30
        x[r + 4, : n // 2] = x[r + 4].max()  # maxima filling blocks
        for temperature in (1.0, 0.7, 1e30):
            plain = f(x, axis=-1, temperature=temperature)
            masked = f(x, axis=-1, temperature=temperature, where=np.ones(x.shape, bool))
            np.testing.assert_array_equal(plain, masked, err_msg=f"T={temperature}")

        unsigned = np.uint32 if np.dtype(dtype).itemsize == 4 else np.uint64
        word = 0xFFC00155 if unsigned == np.uint32 else 0xFFF8000000000155
        nan = np.array(word, dtype=unsigned).view(dtype)
        at = [1, 2, 4, 8, 16, 32, 48]  # the NaN beside the max, then a lane's width on
        y = random_logits(rng, (len(at), n), dtype)
        y[:, 0] = y.max() + 1
        y[np.arange(len(at)), at] = nan
        with np.errstate(invalid="ignore"):
            bits = np.ascontiguousarray(f(y, axis=-1)).view(unsigned)
        np.testing.assert_array_equal(bits, np.broadcast_to(bits[:1], bits.shape))


def _past_a_line(shape, dtype, offset):
    """An array whose data starts `offset` bytes past a 64-byte boundary."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + 128, dtype=np.uint8)
    start = -raw.ctypes.data % 64 + offset
    return raw[start : start + size].view(dtype).reshape(shape)


@pytest.mark.parametrize("level", _CPP_LEVELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [256, 257, 300, 320, 700, 1000, 1024, 1040, 1100, 4100])
def test_rows_off_a_cache_line_give_the_bits_of_rows_on_one(level, dtype, kind, n):
    """Where x and y start at the same place off a 64-byte line, softmax's
    float rows on AVX-512 run their exp pass at y's lines, the sums' lanes
    rotated to keep the row's order: the
    results must not depend on where x and y sit. Every float offset of x and
    y together, of y alone (x on a line: the loop at the row's offsets), and
    of an output whose rows lie further apart than x's (x then off y's place
    in later rows), against the masked loop (a mask that keeps every
    element), which always runs at the row's offsets; rows in groups
    (carried last passes, rows scanned ahead) whose starts move from row to
    row where a row is not a whole number of lines; several elements at the
    max, runs of tiny terms, a causal row, special rows; in place too."""
    with _at_level(level):
        rng = np.random.default_rng(59)
        f = getattr(fs, kind)
        x = random_logits(rng, (11, n), dtype)
        x[1, :: n // 5] = x[1].max()  # several elements at the max
        x[2, n // 3 :] -= 200.0  # tiny and zero terms
        x[3, n // 2 + 1 :] = -np.inf  # a causal row
        x[4, 7] = np.nan
        x[5, -1] = np.inf
        x[6] = -np.inf
        for temperature in (1.0, 0.7):
            with np.errstate(invalid="ignore"):
                want = f(x, axis=-1, temperature=temperature, where=np.ones(x.shape, bool))
            shape = want.shape
            for offset in range(0, 64, np.dtype(dtype).itemsize):
                for x_offset in (offset, 0):
                    xs = _past_a_line(x.shape, dtype, x_offset)
                    xs[...] = x
                    out = _past_a_line(shape, dtype, offset)
                    with np.errstate(invalid="ignore"):
                        got = f(xs, axis=-1, temperature=temperature, out=out)
                    message = f"T={temperature} x at {x_offset}, y at {offset} bytes"
                    np.testing.assert_array_equal(got, want, err_msg=message)
                    numbers = ~np.isnan(want)
                    assert np.array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))
                if kind != "logsumexp":
                    padded = _past_a_line((x.shape[0], n + 3), dtype, offset)[:, :n]
                    xs = _past_a_line(x.shape, dtype, offset)
                    xs[...] = x
                    with np.errstate(invalid="ignore"):
                        f(xs, axis=-1, temperature=temperature, out=padded)
                    np.testing.assert_array_equal(padded, want, err_msg=f"padded at {offset}")
                    xs[...] = x
                    with np.errstate(invalid="ignore"):
                        f(xs, axis=-1, temperature=temperature, out=xs)
                    np.testing.assert_array_equal(xs, want, err_msg=f"in place at {offset}")


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(3,), (1, 3), (4, 5, 130), (2, 1, 1)])
def test_plain_call_matches_the_general_path(dtype, kind, shape):
    """softmax(x) on a C-contiguous array takes a one-step path into the
    extension; it must give what the general path gives."""
    x = random_logits(np.random.default_rng(27), shape, dtype)
    x.flags.writeable = False  # read-only input is fine
    f = getattr(fs, kind)
    general = f(x, backend=fs.backends()[0])
    np.testing.assert_array_equal(f(x), general)
    np.testing.assert_array_equal(f(x, temperature=1), general)


def test_float16_round_trips_every_value(backend):
    """logsumexp of one element is the element: every float16 bit pattern
    goes through the widening and narrowing of the 16-bit path unchanged."""
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    y = fs.logsumexp(x[:, None], axis=-1, backend=backend)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(y[finite], x[finite])
    assert np.isnan(y[np.isnan(x)]).all()


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_16bit_results_are_the_rounded_float32_results(backend, kind):
    """float16 / bfloat16 in, computed in float32, rounded once to nearest even."""
    rng = np.random.default_rng(28)
    dtypes = [np.dtype(np.float16)]
    try:
        import ml_dtypes

        dtypes.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    f = getattr(fs, kind)
    for dtype in dtypes:
        x = (rng.standard_normal((7, 300)) * 4).astype(dtype)
        x[0, :50] = -30  # tiny probabilities: subnormal float16 results
        for axis in (-1, 0):
            want = f(x.astype(np.float32), axis=axis, backend=backend)
            with np.errstate(over="ignore"):
                want = want.astype(dtype)
            np.testing.assert_array_equal(f(x, axis=axis, backend=backend), want)


@pytest.mark.usefixtures("online_from_1mib")
@pytest.mark.parametrize("kind", KINDS)
def test_long_columns_give_the_values_of_rows(backend, kind):
    """Columns as long as an online row run through the row kernel, so a
    non-last axis gives the row layout's values there too."""
    x = random_logits(np.random.default_rng(29), ((1 << 18) + 5, 3), np.float32)
    f = getattr(fs, kind)
    rows = f(np.ascontiguousarray(x.T), axis=-1, backend=backend)
    np.testing.assert_array_equal(
        f(x, axis=0, backend=backend), rows if kind == "logsumexp" else rows.T
    )


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.usefixtures("online_from_1mib")  # softmax's rows too, on every level
def test_outputs_past_the_cache_give_the_values_of_one_row_at_a_time(backend, dtype, kind):
    """Calls whose y passes 16 MiB store long rows past the caches (the
    compiled kernel's streaming stores, from the first aligned vector of y):
    the values are those of each row alone, whose output is small, into an
    out= that starts off the vector alignment and into a fresh array."""
    n = (5 << 20) // np.dtype(dtype).itemsize + 13  # rows of 5 MiB
    x = random_logits(np.random.default_rng(31), (4, n), dtype)
    f = getattr(fs, kind)
    want = np.stack([f(row, backend=backend) for row in x])
    raw = np.full(x.size + 3, 7.0, dtype=dtype)
    out = raw[3:].reshape(x.shape)  # 3 elements past the allocation's alignment
    assert f(x, axis=-1, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(raw[:3], 7.0)  # nothing written before y
    np.testing.assert_array_equal(f(x, axis=-1, backend=backend), want)
