"""pytest-benchmark suite: not part of the default test run (testpaths = tests).

    python -m pytest bench/ --benchmark-only                    # everything
    python -m pytest bench/ --benchmark-only -k "32000"          # one shape
    python -m pytest bench/ --benchmark-only --bench-threads 2   # two threads

The process is pinned to one CPU (the last one it may use) unless --bench-threads
asks for more; fastsoftmax and PyTorch use that many threads.
"""

from __future__ import annotations

import os

import pytest

import fastsoftmax as fs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-threads",
        type=int,
        default=1,
        help="threads for fastsoftmax and PyTorch; the process is pinned to that many CPUs",
    )


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("--bench-threads")
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[-threads:])
    fs.set_num_threads(threads)


@pytest.fixture(scope="session")
def bench_threads(request: pytest.FixtureRequest) -> int:
    return request.config.getoption("--bench-threads")
