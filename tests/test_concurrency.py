"""Many Python threads at once: every public function on every backend, on
shared and private inputs, while another thread changes the thread count,
gives the bits of the serial calls."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastsoftmax as fs

THREADS = 8


def _calls(backend: str, rng: np.random.Generator) -> list:
    """(name, function of no arguments) pairs; inputs big enough for the
    compiled backend to split them over its pool, small enough for numba."""
    x = rng.standard_normal((96, 1536)).astype(np.float32) * 4
    x64 = rng.standard_normal((48, 700)) * 4
    mask = rng.random(x64.shape) < 0.8
    labels = rng.integers(0, 700, size=48)
    y = fs.softmax(x64, backend=backend)
    grad = rng.standard_normal(x64.shape)

    def softmax_out() -> np.ndarray:
        out = np.empty_like(x)  # each call its own out=
        fs.softmax(x, out=out, backend=backend)
        return out

    return [
        ("softmax", lambda: fs.softmax(x, backend=backend)),
        ("softmax out=", softmax_out),
        ("softmax axis 0", lambda: fs.softmax(x64, axis=0, backend=backend)),
        ("log_softmax where", lambda: fs.log_softmax(x64, where=mask, backend=backend)),
        ("log_softmax T", lambda: fs.log_softmax(x, temperature=0.7, backend=backend)),
        ("logsumexp", lambda: fs.logsumexp(x, axis=-1, backend=backend)),
        ("logsumexp all", lambda: fs.logsumexp(x64, axis=None, backend=backend)),
        ("cross_entropy", lambda: fs.cross_entropy(x64, labels, backend=backend)),
        ("softmax_grad", lambda: fs.softmax_grad(y, grad, backend=backend)),
        ("log_softmax_grad", lambda: fs.log_softmax_grad(np.log(y), grad, backend=backend)),
    ]


@pytest.mark.parametrize("backend", fs.backends())
def test_every_function_from_many_threads_gives_the_serial_bits(backend):
    calls = _calls(backend, np.random.default_rng(2026))
    previous = fs.get_num_threads()
    fs.set_num_threads(1)
    try:
        want = {name: np.asarray(call()) for name, call in calls}
        stop = threading.Event()

        def change_threads() -> None:  # the thread count changes mid-flight
            counts = [1, 2, 3, 4]
            k = 0
            while not stop.is_set():
                fs.set_num_threads(counts[k % len(counts)])
                k += 1
                stop.wait(0.001)

        changer = threading.Thread(target=change_threads)
        changer.start()
        try:
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                jobs = [(name, pool.submit(call)) for _ in range(3) for name, call in calls]
                got = [(name, np.asarray(job.result())) for name, job in jobs]
        finally:
            stop.set()
            changer.join()
    finally:
        fs.set_num_threads(previous)
    for name, value in got:
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_one_shared_output_array_per_thread_row_block():
    """Threads writing disjoint rows of one shared out= (views) do not disturb
    each other."""
    x = np.random.default_rng(7).standard_normal((THREADS * 64, 1024)).astype(np.float32)
    want = fs.softmax(x)
    out = np.full_like(x, np.nan)
    blocks = np.array_split(np.arange(len(x)), THREADS)

    def run(rows: np.ndarray) -> None:
        fs.softmax(x[rows[0] : rows[-1] + 1], out=out[rows[0] : rows[-1] + 1])

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(run, blocks))
    np.testing.assert_array_equal(out, want)
