"""The default thread count (environment, affinity, cgroup quota) and
threadpoolctl's control of it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

import fastsoftmax as fs
from fastsoftmax import _threads


@pytest.fixture
def machine(monkeypatch):
    """8 CPUs and no quota, unless a test says otherwise."""
    monkeypatch.setattr(_threads, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(_threads, "cgroup_cpu_quota", lambda: None)
    return monkeypatch


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 8),
        ({"FASTSOFTMAX_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "2"}, 2),
        ({"OMP_NUM_THREADS": "4,2"}, 4),  # one count per nesting level: the first
        ({"FASTSOFTMAX_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}, 3),
        ({"FASTSOFTMAX_NUM_THREADS": "0", "OMP_NUM_THREADS": "5"}, 5),  # 0 is not a count
        ({"FASTSOFTMAX_NUM_THREADS": "many"}, 8),
        ({"OMP_NUM_THREADS": ""}, 8),
        ({"FASTSOFTMAX_NUM_THREADS": "16"}, 16),  # asked for: not capped
    ],
)
def test_default_threads_from_the_environment(machine, environ, expected):
    assert _threads.default_threads(environ) == expected


def test_default_threads_capped_by_the_quota(machine):
    machine.setattr(_threads, "cgroup_cpu_quota", lambda: 3)
    assert _threads.default_threads({}) == 3
    machine.setattr(_threads, "affinity_cpus", lambda: 2)
    assert _threads.default_threads({}) == 2


def _tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(proc_cgroup)
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root, proc


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "expected"),
    [
        # cgroup v2: the process's own directory, rounded up
        ("0::/job\n", {"cgroup.controllers": "cpu", "job/cpu.max": "150000 100000\n"}, 2),
        ("0::/job\n", {"cgroup.controllers": "cpu", "job/cpu.max": "max 100000\n"}, None),
        # a parent's quota binds when it is tighter
        (
            "0::/a/b\n",
            {"cgroup.controllers": "", "a/cpu.max": "100000 100000", "a/b/cpu.max": "max 100000"},
            1,
        ),
        # hybrid hierarchy: v2 under unified/
        ("0::/\n", {"unified/cpu.max": "300000 100000"}, 3),
        # cgroup v1: the cpu controller's quota and period (-1: none)
        (
            "4:memory:/x\n1:cpu,cpuacct:/pod\n0::/\n",
            {"cpu/pod/cpu.cfs_quota_us": "250000", "cpu/pod/cpu.cfs_period_us": "100000"},
            3,
        ),
        (
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
            None,
        ),
        ("", {}, None),
    ],
)
def test_cgroup_quota(tmp_path, proc_cgroup, files, expected):
    root, proc = _tree(tmp_path, proc_cgroup, files)
    assert _threads.cgroup_cpu_quota(root, proc) == expected


def test_no_cgroups_means_no_quota(tmp_path):
    assert _threads.cgroup_cpu_quota(tmp_path / "none", tmp_path / "none") is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_a_process_pinned_to_one_cpu_starts_with_one_thread():
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from fastsoftmax import _threads; import fastsoftmax as fs\n"
        "print(fs.get_num_threads(), _threads.default_threads({}))"
    )
    out = run_python(code, FASTSOFTMAX_NUM_THREADS="", OMP_NUM_THREADS="")
    assert out.split() == ["1", "1"]


def test_omp_num_threads_sets_the_default():
    out = run_python(
        "import fastsoftmax as fs; print(fs.get_num_threads())",
        FASTSOFTMAX_NUM_THREADS="",
        OMP_NUM_THREADS="1",
    )
    assert out.strip() == "1"


def test_threadpoolctl_limits_reach_the_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if "cpp" not in fs.backends():
        pytest.skip("no compiled extension: threadpoolctl finds no library of ours")
    previous = fs.get_num_threads()
    fs.set_num_threads(3)
    try:
        ours = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "fastsoftmax"]
        assert len(ours) == 1 and ours[0]["num_threads"] == 3, ours
        assert ours[0]["version"] == fs.__version__
        x = np.random.default_rng(0).standard_normal((64, 4096))
        expected = fs.softmax(x)
        with threadpoolctl.threadpool_limits(limits=1):
            assert fs.get_num_threads() == 1
            np.testing.assert_array_equal(fs.softmax(x), expected)
        assert fs.get_num_threads() == 3
        with threadpoolctl.threadpool_limits(limits=2, user_api="fastsoftmax"):
            assert fs.get_num_threads() == 2
        assert fs.get_num_threads() == 3
    finally:
        fs.set_num_threads(previous)


def test_info_reports_the_thread_count():
    assert fs.info()["threads"] == fs.get_num_threads()
