"""Memory over long runs: a million small calls and a thousand large ones per
backend, with the resident set size (RSS) and tracemalloc read before and
after (a few minutes; not part of the default test run):

    python -m pytest bench/test_memory.py -s

Prints the growth; fails past 1 MiB of RSS or 64 KiB traced.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax as fs

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="reads the RSS from /proc (Linux)"
)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _suite_helper():
    """tests/test_memory.py's tracemalloc measure (under another module name:
    this file's name is the same)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "test_memory.py"
    spec = importlib.util.spec_from_file_location("fastsoftmax_suite_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._traced_growth


def _growth(call, repeats: int) -> tuple[int, int]:
    """RSS and tracemalloc growth over `repeats` calls, after a warm-up."""
    for _ in range(1000):
        call()
    rss = _rss()
    traced = _suite_helper()(call, repeats)
    return _rss() - rss, traced


@pytest.mark.parametrize("backend", fs.backends())
@pytest.mark.parametrize(
    ("shape", "repeats"), [((3,), 1_000_000), ((512, 4096), 1_000)], ids=["small", "large"]
)
def test_memory_is_flat(backend, shape, repeats):
    if backend == "numpy" and repeats > 100_000:
        repeats //= 10  # the reference is slow per call: 100,000 calls
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = np.empty_like(x)
    calls = {
        "softmax": lambda: fs.softmax(x, backend=backend),
        "log_softmax out=": lambda: fs.log_softmax(x, out=out, backend=backend),
        "logsumexp": lambda: fs.logsumexp(x, backend=backend),
    }
    for name, call in calls.items():
        rss, traced = _growth(call, repeats // len(calls))
        print(
            f"\n{backend} {name} {shape} x{repeats // len(calls)}: RSS {rss:+d} B, "
            f"traced {traced:+d} B"
        )
        assert rss < 1 << 20 and traced < 64 << 10
