"""The package as it ships: one version, its typing, its license, the files of
its sdist, and (in the wheel checks of .ci/wheel) that the installed copy is
the one under test."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import run_python

import fastsoftmax as fs

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(fs.__file__).resolve().parent
in_checkout = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").exists(), reason="run from a checkout: reads the build files"
)


def test_one_version_source():
    assert importlib.metadata.version("fastsoftmax") == fs.__version__
    assert fs.info()["version"] == fs.__version__


@in_checkout
def test_pyproject_takes_the_version_from_the_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert "\nversion =" not in text
    assert 'input = "src/fastsoftmax/__init__.py"' in text


def test_version_option():
    out = run_python("from fastsoftmax.__main__ import main; main(['--version'])")
    assert out == f"fastsoftmax {fs.__version__}\n"


def test_license_and_typing_ship_with_the_package():
    files = importlib.metadata.distribution("fastsoftmax").files or []
    assert any(f.name == "LICENSE" for f in files), "no LICENSE in the distribution's files"
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file()


def _python(*args: str, timeout: float) -> str:
    """Run this Python in the checkout; assert it succeeds; what it printed."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _sdist_expected() -> set[str]:
    names = {"PKG-INFO", "pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE"}
    names |= {f"csrc/{p.name}" for p in (ROOT / "csrc").iterdir() if p.suffix in (".h", ".cpp")}
    package = ROOT / "src" / "fastsoftmax"
    shipped = (".py", ".pyi", ".typed", ".html", ".css", ".js")
    for path in package.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in shipped:
            names.add(path.relative_to(ROOT).as_posix())
    return names


@in_checkout
def test_sdist_holds_what_a_build_needs_and_nothing_else(tmp_path):
    """The C++ sources, the build files, the package and its data; no tests,
    bench, docs, CI scripts, caches or build trees."""
    out = _python(
        "-c",
        "import sys; from scikit_build_core.build import build_sdist; "
        "print(build_sdist(sys.argv[1]))",
        str(tmp_path),
        timeout=300,
    )
    archive = tmp_path / out.strip().splitlines()[-1]
    prefix = f"fastsoftmax-{fs.__version__}/"
    with tarfile.open(archive) as sdist:
        names = {m.name for m in sdist.getmembers() if m.isfile()}
    assert all(name.startswith(prefix) for name in names)
    names = {name[len(prefix) :] for name in names}
    expected = _sdist_expected()
    assert names - expected == set(), "files a build does not need"
    assert expected - names == set(), "files a build needs, missing"


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on one file, against the fastsoftmax this test imported."""
    env = dict(os.environ)
    if "site-packages" not in PACKAGE.parts:  # a source checkout (editable install)
        env["MYPYPATH"] = str(PACKAGE.parent)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_typed_usage_passes_mypy_strict(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    done = _mypy(Path(__file__).with_name("typed_usage.py"), cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_rejects_wrong_arguments(tmp_path, tmp_path_factory):
    """The public signatures are checked, not Any: each wrong call is an error."""
    source = tmp_path / "wrong.py"
    source.write_text(
        "import numpy as np\n"
        "import fastsoftmax as fs\n"
        "x = np.zeros(3)\n"
        'fs.softmax(x, backend="gpu")\n'
        'fs.log_softmax(x, temperature="hot")\n'
        'fs.cross_entropy(x, [0], reduction="avg")\n'
        'fs.set_num_threads("2")\n'
        "fs.logsumexp(x, keepdims=1.5)\n"
    )
    done = _mypy(source, tmp_path_factory.getbasetemp() / "mypy-cache")
    assert done.returncode == 1, done.stdout + done.stderr
    flagged = {int(line.split(":")[1]) for line in done.stdout.splitlines() if ": error:" in line}
    assert flagged == {4, 5, 6, 7, 8}, done.stdout


@pytest.mark.skipif(
    not os.environ.get("FASTSOFTMAX_EXPECT_INSTALLED"),
    reason="set by the installed-wheel runs (.ci/wheel, cibuildwheel)",
)
def test_the_installed_copy_is_under_test():
    """The wheel's copy in site-packages, not the checkout's source, was imported;
    with the compiled backend unless the run expects a pure-Python install."""
    assert "site-packages" in PACKAGE.parts, PACKAGE
    assert ROOT not in PACKAGE.parents, PACKAGE
    if os.environ["FASTSOFTMAX_EXPECT_INSTALLED"] == "pure":
        assert "cpp" not in fs.backends()
        assert "was not built" in fs.info()["unavailable"]["cpp"]
    else:
        assert fs.backends()[0] == "cpp", fs.info()["unavailable"]


# Every platform and architecture the wheels are built for (pyproject.toml's
# [tool.cibuildwheel]), each for every CPython from 3.9 to the newest.
WHEEL_PLATFORMS = {
    "linux": {"manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64"},
    "macos": {"macosx_x86_64", "macosx_arm64"},
    "windows": {"win_amd64"},
}


@in_checkout
@pytest.mark.parametrize("platform", sorted(WHEEL_PLATFORMS))
def test_cibuildwheel_builds_every_python_and_architecture(platform):
    if sys.version_info < (3, 11):
        pytest.skip("cibuildwheel runs on Python >= 3.11 (the test extra installs it there)")
    command = ["cibuildwheel", "--platform", platform, "--print-build-identifiers", str(ROOT)]
    builds = [line.split("-", 1) for line in _python("-m", *command, timeout=120).split()]
    pythons = {python for python, _ in builds}
    assert {tag for _, tag in builds} == WHEEL_PLATFORMS[platform]
    assert len(builds) == len(pythons) * len(WHEEL_PLATFORMS[platform])
    minors = sorted(int(python[3:]) for python in pythons)  # cp39 -> 9; no "t" builds
    assert minors == list(range(9, minors[-1] + 1)) and minors[-1] >= 14, minors
