"""bench/loop_cycles.py: the llvm-mca stand-ins for what a core model lacks."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "loop_cycles.py"
_spec = importlib.util.spec_from_file_location("loop_cycles", _PATH)
assert _spec is not None and _spec.loader is not None
loop_cycles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loop_cycles)

# A table exp's lookup: the table in a register or read from memory.
LOOP = [
    "loop:",
    "vpermps %ymm10,%ymm9,%ymm15",
    "vpermps 0x40(%rdx),%ymm3,%ymm7",
    "vpermps -0x20(%rsp,%rax,4),%ymm4,%ymm5",
    "vfmadd213ps %ymm1,%ymm2,%ymm15",
    "add $0x20,%rax",
    "jne loop",
]


def test_znver1_takes_each_vpermps_as_three_in_lane_permutes() -> None:
    modelled = loop_cycles.for_model(LOOP, "znver1")
    assert not any(line.startswith("vpermps") for line in modelled)
    assert modelled[1:4] == [
        "vpermilps %ymm10, %ymm9, %ymm15",
        "vpermilps %ymm9, %ymm15, %ymm15",
        "vpermilps %ymm9, %ymm15, %ymm15",
    ]
    assert modelled[4:7] == [
        "vpermilps 0x40(%rdx), %ymm3, %ymm7",
        "vpermilps %ymm3, %ymm7, %ymm7",
        "vpermilps %ymm3, %ymm7, %ymm7",
    ]
    assert modelled[7:10] == [
        "vpermilps -0x20(%rsp,%rax,4), %ymm4, %ymm5",
        "vpermilps %ymm4, %ymm5, %ymm5",
        "vpermilps %ymm4, %ymm5, %ymm5",
    ]
    assert modelled[10:] == LOOP[4:]


@pytest.mark.parametrize("core", ["znver3", "skylake-avx512"])
def test_other_models_see_the_loop_as_compiled(core: str) -> None:
    assert loop_cycles.for_model(LOOP, core) == LOOP


@pytest.mark.skipif(shutil.which("llvm-mca") is None, reason="needs llvm-mca on PATH")
def test_znver1_figure_is_not_the_placeholder_latency() -> None:
    # LLVM 14 gives vpermps a 100-cycle placeholder on znver1: a dependent
    # chain of two would take some 200 cycles an iteration; six dependent
    # in-lane permutes take six.
    chain = ["loop:", "vpermps %ymm10,%ymm9,%ymm9", "vpermps %ymm10,%ymm9,%ymm9", "jne loop"]
    assert 5 < loop_cycles.cycles(chain, "znver1") < 20


def _extension() -> str | None:
    try:
        from fastsoftmax import _core
    except ImportError:
        return None
    return _core.__file__


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils) on PATH")
@pytest.mark.skipif(_extension() is None, reason="needs the compiled extension")
def test_every_pass_names_a_function_of_the_extension() -> None:
    # A kernel renamed (group_exp_sums -> group_exp_sums_of) once left its
    # row out of the table without a word: every pass is compiled at the
    # levels whose softmax groups scan ahead.
    import fastsoftmax as fs

    extension = _extension()
    assert extension is not None
    names = loop_cycles.functions(extension)
    if not any(k.startswith("fastsoftmax::") for k in names):
        pytest.skip("a stripped extension (a release build): no kernel names to read")
    levels = [level for level in loop_cycles.SCANS_AHEAD if level in fs.info()["simd_levels"]]
    if not levels:
        pytest.skip("the extension has none of the levels the table reads")
    for level in levels:
        for name, pattern, _ in loop_cycles.PASSES:
            found = [k for k in names if f"fastsoftmax::{level}::" in k and re.search(pattern, k)]
            assert found, f"{name} at {level}"
