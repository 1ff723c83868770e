"""The build's compiler requirements agree with what the README promises.

The kernels use GCC/Clang vector extensions; ``__builtin_shufflevector`` came
with GCC 12 (the README once said GCC 11, which cannot build them). CMake
checks the version itself and builds the pure-Python package for a compiler
it cannot use, so README, CMakeLists.txt and the code must name one floor."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (ROOT / "CMakeLists.txt").exists(), reason="run from a checkout: reads the build files"
)


def _cmake_floor(compiler: str) -> int:
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(
        rf'CMAKE_CXX_COMPILER_ID (?:STREQUAL|MATCHES) "{compiler}".*?'
        r"VERSION_GREATER_EQUAL (\d+)",
        text,
        re.S,
    )
    assert match, f"CMakeLists.txt checks no {compiler} version"
    return int(match.group(1))


def test_readme_names_the_compiler_floors_cmake_enforces():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"GCC >= (\d+) or Clang >= (\d+)", readme)
    assert match, "README names no compiler floor"
    assert (int(match.group(1)), int(match.group(2))) == (
        _cmake_floor("GNU"),
        _cmake_floor("Clang"),
    )


def test_gcc_floor_builds_the_builtins_the_kernels_use():
    sources = "".join(p.read_text() for p in (ROOT / "csrc").glob("*.[hc]*"))
    if "__builtin_shufflevector" in sources:
        assert _cmake_floor("GNU") >= 12  # GCC 12 added __builtin_shufflevector


def test_no_msvc_flags_branch():
    """MSVC's cl cannot compile the vector extensions: CMake must not pretend to
    build the kernels with it (it builds the pure-Python package instead)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    assert "if(MSVC)" not in text
    assert 'CMAKE_CXX_COMPILER_FRONTEND_VARIANT STREQUAL "MSVC"' in text


def _x86_levels() -> list[tuple[str, list[str], int]]:
    """(level, its flags, its vector bytes) of the x86 levels, from CMakeLists.txt."""
    text = (ROOT / "CMakeLists.txt").read_text()
    levels = []
    for name in ("avx2", "avx2_wide", "sse2"):
        flags = re.search(rf"set\(FASTSOFTMAX_FLAGS_{name} ([^)]*)\)", text)
        width = re.search(rf"set\(FASTSOFTMAX_BYTES_{name} (\d+)\)", text)
        assert flags and width, name
        levels.append((name, flags.group(1).replace('""', "").split(), int(width.group(1))))
    return levels


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("g++") is None,
    reason="x86 levels, checked with g++",
)
@pytest.mark.parametrize("level", _x86_levels(), ids=lambda level: level[0])
def test_levels_compile_under_a_user_march_that_enables_avx2(level):
    """A user's CXXFLAGS (-march=x86-64-v3, -march=native) reach every level's
    compile: the 16-byte SSE2 level then sees __AVX2__, and must still pick
    what fits its width (once it took AVX2's 8-entry exp table and failed)."""
    name, flags, width = level
    command = [
        "g++", "-std=gnu++20", "-fsyntax-only", "-march=x86-64-v3", *flags,
        f"-DFASTSOFTMAX_LEVEL={name}", f"-DFASTSOFTMAX_VECTOR_BYTES={width}",
        f"-I{ROOT / 'csrc'}", str(ROOT / "csrc" / "level_kernels.cpp"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
