"""The default thread count, and fastsoftmax's controller for threadpoolctl.

The default is the first of:

1. ``FASTSOFTMAX_NUM_THREADS``, then ``OMP_NUM_THREADS`` (its first entry), when
   set to a positive integer: what the user, or a process pool that starts
   workers with it (joblib/loky does), asked for;
2. the CPUs this process may run on (its affinity), capped by the CPU quota
   of its cgroup (a container's ``--cpus``), rounded up.

So a pool of N worker processes, each pinned or given a quota or the
variables, does not start N pools as wide as the machine. threadpoolctl's
``threadpool_limits(n)`` (which joblib applies in its workers) reaches the
thread count through :class:`FastsoftmaxController`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

ENV_VARIABLES = ("FASTSOFTMAX_NUM_THREADS", "OMP_NUM_THREADS")


def _positive_int(text: str) -> int | None:
    # OMP_NUM_THREADS may list one count per nesting level ("4,2"): the first
    try:
        value = int(text.split(",")[0].strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def affinity_cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cgroup_paths(proc_cgroup: str, root: Path) -> list[Path]:
    """The cgroup directories of this process that may hold a CPU quota, from
    the process's own directory up to the root (a parent's quota binds too)."""
    directories = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: one unified hierarchy (hybrid: at unified/)
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's mount
            base = root / "cpu"
            if not base.exists():
                base = root / controllers
        else:
            continue
        directory = base / path.lstrip("/")
        while True:
            directories.append(directory)
            if directory == base:
                break
            directory = directory.parent
    return directories


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> int | None:
    """The CPU quota of this process's cgroups in whole CPUs (rounded up), the
    tightest along its hierarchy; None when there is none (or no cgroups)."""
    try:
        proc_cgroup = (proc / "self" / "cgroup").read_text()
    except OSError:
        return None
    quotas = []
    for directory in _cgroup_paths(proc_cgroup, root):
        try:
            if (directory / "cpu.max").exists():  # v2: "max 100000" or "200000 100000"
                quota, period = (directory / "cpu.max").read_text().split()[:2]
                if quota != "max":
                    quotas.append(int(quota) / int(period))
            elif (directory / "cpu.cfs_quota_us").exists():  # v1: -1 when unlimited
                quota = int((directory / "cpu.cfs_quota_us").read_text())
                period = int((directory / "cpu.cfs_period_us").read_text())
                if quota > 0 and period > 0:
                    quotas.append(quota / period)
        except (OSError, ValueError):
            continue
    if not quotas:
        return None
    return max(1, math.ceil(min(quotas)))


def default_threads(environ: Mapping[str, str] = os.environ) -> int:
    """The thread count a process starts with (the rules of the module docstring)."""
    for name in ENV_VARIABLES:
        value = _positive_int(environ.get(name, ""))
        if value is not None:
            return value
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota()
    return cpus if quota is None else min(cpus, quota)


def register_with_threadpoolctl() -> bool:
    """Make threadpoolctl see our thread pool (when it is installed and the
    compiled extension is loaded). Returns whether it registered."""
    import importlib.util

    if importlib.util.find_spec("threadpoolctl") is None:
        return False
    import threadpoolctl

    if not hasattr(threadpoolctl, "register"):  # before threadpoolctl 3.4
        return False

    class FastsoftmaxController(threadpoolctl.LibController):  # type: ignore[misc]
        """fastsoftmax's thread count, as threadpoolctl sees it. The library is
        found by its file name and confirmed by a symbol only it exports."""

        user_api = "fastsoftmax"
        internal_api = "fastsoftmax"
        filename_prefixes = ("_core",)
        check_symbols = ("fastsoftmax_get_num_threads",)

        def get_num_threads(self) -> int:
            from . import get_num_threads

            return get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            from . import set_num_threads

            set_num_threads(int(num_threads))

        def get_version(self) -> str:
            from . import __version__

            return __version__

    threadpoolctl.register(FastsoftmaxController)
    return True
