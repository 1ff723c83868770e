"""One pytest-benchmark group per (function, dtype, shape, axis): our three backends,
the peers that are installed (scipy.special, torch.softmax on the CPU, jitted
jax.nn.softmax, ONNX Runtime through session.run and through IOBinding) and
np.copyto of the same bytes (the ceiling), side by side.

Each result is checked against the NumPy reference before it is timed, so a
broken kernel cannot pass as a fast one. The cases are those of
``fastsoftmax bench`` (src/fastsoftmax/_bench.py).
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import pytest

from fastsoftmax import _bench

CASES = [case for function in _bench.FUNCTIONS for case in _bench.select_cases((function,))]
NAMES = [
    _bench.BACKENDS[0],
    _bench.CPP_OUT,
    *_bench.BACKENDS[1:],
    *_bench.BENCH_PEERS,
    _bench.COPY,
]


@lru_cache(maxsize=1)
def _input(case: _bench.Case) -> tuple[np.ndarray, np.ndarray]:
    """The case's input and the reference result, kept while its group runs."""
    x = case.make_input()
    return x, _bench.reference(case, x)


@cache
def _contender(name: str) -> _bench.Contender | None:
    if name == _bench.COPY:
        return _bench._copy_contender()
    found, _ = _bench.load_contenders([name])
    return found[0] if found else None


@pytest.fixture(scope="module", autouse=True)
def _peer_threads(bench_threads: int):
    loaded = [c for c in (_contender(n) for n in _bench.BENCH_PEERS) if c is not None]
    previous = _bench._set_peer_threads(loaded, bench_threads)
    yield
    _bench._restore_peer_threads(previous)


@pytest.mark.parametrize(
    ("case", "name"),
    [(case, name) for case in CASES for name in NAMES],
    ids=[f"{case.key}-{name}" for case in CASES for name in NAMES],
)
def test_speed(benchmark, case: _bench.Case, name: str) -> None:
    contender = _contender(name)
    if contender is None:
        pytest.skip(f"{name} is not installed")
    x, expected = _input(case)
    with _bench.warnings_quiet():
        call = contender.prepare(case, x)
        result = call()  # outside the timing: compiles a jitted peer, and is checked
    if contender.kind != "copy":
        _bench.check(case, contender.to_numpy(result), expected, contender.kind)
    del result
    benchmark.group = case.label
    benchmark.name = _bench.display_name(name, contender.kind)
    benchmark.extra_info.update(
        bytes=case.input_bytes + case.output_bytes
        if contender.kind != "copy"
        else 2 * case.input_bytes,
        row_length=case.row_length,
    )
    benchmark(call)
    median = benchmark.stats.stats.median
    benchmark.extra_info["GB/s"] = round(benchmark.extra_info["bytes"] / median / 1e9, 3)
