"""The build's compiler requirements agree with what the README promises.

The kernels use GCC/Clang vector extensions; ``__builtin_shufflevector`` came
with GCC 12 (the README once said GCC 11, which cannot build them). CMake
checks the version itself and builds the pure-Python package for a compiler
it cannot use, so README, CMakeLists.txt and the code must name one floor."""

from __future__ import annotations

import re
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
