"""Dask arrays in, dask arrays out: every function, lazily, with the semantics of
NumPy input, chunked along and across the reduced axes (odd and empty chunks,
special values in single chunks), on the threaded scheduler and on a
dask.distributed cluster of worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_matches_oracle, run_python

import fastsoftmax as fs

da = pytest.importorskip("dask.array")

KINDS = ("softmax", "log_softmax", "logsumexp")
CHUNKINGS = {
    "rows whole": (4, 40),
    "across": (4, 7),
    "odd": ((5, 3, 1), (13, 1, 20, 6)),
    "empty chunks": ((4, 0, 5), (10, 0, 30)),
    "one column each": (9, 1),
}


def logits(dtype=np.float64, shape=(9, 40), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 4).astype(dtype)


def compute(result):
    assert isinstance(result, da.Array), type(result)
    return result.compute(scheduler="threads")


def test_importing_fastsoftmax_does_not_import_dask():
    out = run_python("import sys, fastsoftmax; print('dask' in sys.modules)")
    assert out.strip() == "False"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunks", list(CHUNKINGS), ids=str)
@pytest.mark.parametrize("axis", [-1, 0, None, (0, 1)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
def test_same_as_numpy(kind, chunks, axis, dtype):
    x = logits(dtype)
    d = da.from_array(x, chunks=CHUNKINGS[chunks])
    got = compute(getattr(fs, kind)(d, axis=axis))
    want = getattr(fs, kind)(x, axis=axis)
    assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
    if dtype == np.float16:  # two roundings to float16 may differ by an ulp
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-7)
        return
    if isinstance(axis, int):
        assert_matches_oracle(kind, got, x, axis)
    else:  # every axis: one row
        assert_matches_oracle(kind, got.reshape(1, -1) if kind != "logsumexp" else got.reshape(1),
                              x.reshape(1, -1))  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunks", ["rows whole", "across", "odd"])
def test_temperature_where_keepdims(kind, chunks):
    x = logits()
    rng = np.random.default_rng(1)
    mask = rng.random(x.shape) < 0.6
    mask[2] = False  # a row with nothing left
    mask[3, :7] = False  # a first chunk with nothing left
    d = da.from_array(x, chunks=CHUNKINGS[chunks])
    for where in (mask, da.from_array(mask, chunks=(3, 11)), mask[0]):
        kwargs = {"temperature": 0.7, "where": where}
        if kind == "logsumexp":
            kwargs["keepdims"] = True
        got = compute(getattr(fs, kind)(d, **kwargs))
        want = getattr(fs, kind)(x, **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


SPECIAL_ROWS = [
    [-np.inf] * 7 + list(range(33)),  # a first chunk of nothing but -inf
    [np.nan, *range(39)],  # NaN in one chunk
    [*range(39), np.inf],  # +inf in the last chunk
    [-np.inf] * 40,  # every value -inf
    [1e308, -1e308] * 20,  # extremes
    [np.inf] * 40,
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunks", [(2, 7), (2, 40), (1, 13)])
def test_special_values(kind, chunks):
    x = np.array(SPECIAL_ROWS, dtype=np.float64)
    got = compute(getattr(fs, kind)(da.from_array(x, chunks=chunks)))
    want = getattr(fs, kind)(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-13)
    for w in (np.arange(40) % 3 > 0, np.zeros(40, bool)):  # masked too
        got = compute(getattr(fs, kind)(da.from_array(x, chunks=chunks), where=w))
        np.testing.assert_allclose(got, getattr(fs, kind)(x, where=w), rtol=1e-13)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_accuracy_does_not_grow_with_chunks(kind):
    """A long float32 row in 1, 10, 100 and 1000 chunks: within the same bound."""
    x = logits(np.float32, (2, 20_000), seed=3) * 5
    for n in (1, 10, 100, 1000):
        got = compute(getattr(fs, kind)(da.from_array(x, chunks=(2, 20_000 // n))))
        assert_matches_oracle(kind, got, x)
    assert_matches_oracle("logsumexp", compute(fs.logsumexp(da.from_array(x, chunks=(1, 20)))), x)


def test_lazy_and_no_rechunk_within_chunks():
    calls = []
    x = da.from_array(logits(), chunks=(3, 40)).map_blocks(lambda b: calls.append(b.size) or b)
    y = fs.softmax(x)
    # (dask may call it on tiny arrays to learn the result's type): no block computed
    assert max(calls, default=0) < 3 * 40
    calls.clear()
    assert y.numblocks == x.numblocks and y.chunks == x.chunks
    names = " ".join(str(k) for k in y.dask.layers)
    assert "rechunk" not in names
    assert len(y.dask.layers) == len(x.dask.layers) + 1  # one blockwise layer
    y.compute(scheduler="sync")
    assert len([c for c in calls if c]) == x.npartitions
    calls.clear()  # a dask target stays lazy too
    labels = da.from_array(np.arange(9) % 40, chunks=3).map_blocks(
        lambda b: calls.append(b.size) or b
    )
    loss = fs.cross_entropy(x, labels)
    assert max(calls, default=0) < 3
    assert isinstance(loss, da.Array)


def test_graph_grows_with_the_chunks_not_their_product():
    sizes = []
    for n in (4, 16, 64):
        x = da.zeros((8, 64 * 16), chunks=(8, 64 * 16 // n))
        sizes.append(len(dict(fs.softmax(x).__dask_graph__())))
    assert sizes[2] / sizes[1] < 4.6 and sizes[1] / sizes[0] < 4.6  # linear in n
    x = da.zeros((8, 1024), chunks=(8, 64))
    for layer in fs.softmax(x).dask.layers.values():  # no task holds more than a chunk's rows
        assert "rechunk" not in type(layer).__name__.lower()


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("chunks", ["rows whole", "across", "odd"])
def test_gradients(log, chunks):
    forward = fs.log_softmax if log else fs.softmax
    backward = fs.log_softmax_grad if log else fs.softmax_grad
    x = logits()
    g = np.random.default_rng(2).standard_normal(x.shape)
    y = forward(x)
    mask = np.arange(40) % 4 > 0
    for kwargs in ({}, {"where": mask}, {"axis": 0}):
        yk = forward(
            x, **{k: v for k, v in kwargs.items() if k != "axis"}, axis=kwargs.get("axis", -1)
        )
        want = backward(yk, g, **kwargs)
        got = compute(backward(da.from_array(yk, chunks=CHUNKINGS[chunks]), g, **kwargs))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert compute(backward(da.from_array(y.astype(np.float32), chunks=(3, 7)), g)).dtype == (
        np.float64
    )


@pytest.mark.parametrize("chunks", ["rows whole", "across", "odd"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy(chunks, reduction):
    x = logits()
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 40, size=9)
    labels[3] = -100  # ignored
    probabilities = fs.softmax(rng.standard_normal(x.shape))
    mask = np.arange(40) % 5 > 0
    d = da.from_array(x, chunks=CHUNKINGS[chunks])
    for target in (labels, probabilities):
        for kwargs in ({}, {"label_smoothing": 0.1, "temperature": 1.5}, {"where": mask}):
            want = fs.cross_entropy(x, target, reduction=reduction, **kwargs)
            got = compute(fs.cross_entropy(d, target, reduction=reduction, **kwargs))
            np.testing.assert_allclose(got, want, rtol=1e-12)
    bad = labels.copy()
    bad[0] = 40
    with pytest.raises(IndexError):
        compute(fs.cross_entropy(d, bad))


def test_errors_as_for_numpy():
    d = da.from_array(logits(), chunks=(3, 7))
    with pytest.raises(TypeError):
        fs.softmax(d.astype(complex))
    with pytest.raises(ValueError):
        fs.softmax(d, temperature=0)
    with pytest.raises(ValueError):
        fs.log_softmax(d, where=np.ones(3, bool))
    with pytest.raises(TypeError, match="out="):
        fs.softmax(d, out=np.empty(d.shape))
    with pytest.raises(TypeError, match="dask"):
        fs.logsumexp(d, b=np.ones(40))


def test_distributed_cluster_of_processes():
    """A LocalCluster of two worker processes on loopback computes the graph."""
    distributed = pytest.importorskip("distributed")
    x = logits(np.float32, (64, 3000), seed=5)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        d = da.from_array(x, chunks=(16, 700))
        results = client.compute([fs.softmax(d), fs.log_softmax(d, axis=0), fs.logsumexp(d)])
        softmax, log_softmax, lse = client.gather(results)
    assert_matches_oracle("softmax", softmax, x)
    assert_matches_oracle("log_softmax", log_softmax, x, axis=0)
    assert_matches_oracle("logsumexp", lse, x)
