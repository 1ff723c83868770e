"""A pytest plugin that runs SciPy's own tests with scipy.special's softmax,
log_softmax and logsumexp patched to fastsoftmax.scipy's (tests/test_scipy_door.py
loads it with -p when it runs SciPy's installed test module)."""

from __future__ import annotations

import sys

import fastsoftmax.scipy as door

NAMES = ("softmax", "log_softmax", "logsumexp")
# calls of each function; "scipy": of those, the ones the door sent to SciPy
CALLS = dict.fromkeys((*NAMES, "scipy"), 0)


def _counted(name):
    function = getattr(door, name)

    def counted(*args, **kwargs):
        CALLS[name] += 1
        return function(*args, **kwargs)

    return counted


def pytest_configure(config):
    for name in NAMES:  # count the calls that reach the door, then patch SciPy
        setattr(door, name, _counted(name))
    delegate = door._delegate

    def counted_delegate(*args):
        CALLS["scipy"] += 1
        return delegate(*args)

    door._delegate = counted_delegate
    # SciPy's test decorators look its functions up in a table of array-API
    # capabilities (SciPy >= 1.15): ours take the entries of the ones they replace.
    try:
        from scipy._lib._array_api import xp_capabilities_table
    except ImportError:
        xp_capabilities_table = None
    if xp_capabilities_table is not None:
        for name in NAMES:
            original = door._scipy_function(name)
            if original in xp_capabilities_table:
                xp_capabilities_table[getattr(door, name)] = xp_capabilities_table[original]
    door.patch_scipy()


def pytest_unconfigure(config):
    modules = [m for n, m in sys.modules.items() if n.startswith("scipy.special.tests.")]
    patched = bool(modules) and all(
        getattr(m, n) is getattr(door, n) for m in modules for n in NAMES if hasattr(m, n)
    )
    counts = dict(CALLS, kernel=sum(CALLS[n] for n in NAMES) - CALLS["scipy"])
    print(f"\nfastsoftmax door: patched={patched} calls={counts}")
