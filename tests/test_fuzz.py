"""The fuzz harness (tests/fuzz): its corpus replayed on every backend and SIMD
level, a short fixed-seed run of the one command, and proof that the harness
and its runner catch what they are for (a wrong value, a wrong error, a
crash, a hang)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax as fs

FUZZ = Path(__file__).parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import harness  # noqa: E402
import run  # noqa: E402

CORPUS = sorted(p for p in (FUZZ / "corpus").iterdir() if p.is_file())


def test_corpus_is_kept():
    assert len(CORPUS) >= 100
    functions = {harness.decode(p.read_bytes()).function for p in CORPUS}
    assert functions == set(harness.FUNCTIONS)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name[:10] for p in CORPUS])
def test_corpus_input(path):
    harness.check(path.read_bytes())


def test_short_inputs_are_plain_cases():
    assert harness.decode(b"") == harness.decode(b"\0" * 8)
    case = harness.decode(b"")
    assert (case.function, case.dtype, case.layout, case.out) == (
        "softmax", "float32", "contiguous", None,
    )  # fmt: skip
    assert harness.check(b"") == "ok"


def _fuzz(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        timeout=600,
        check=False,
    )


def test_one_command_runs(tmp_path):
    done = _fuzz("--inputs", "300", "--jobs", "2", "--seed", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 inputs passed" in done.stdout


def test_wrong_value_is_caught(monkeypatch):
    """A softmax off by one part in 10^4 fails the check, on a plain input."""
    softmax = fs.softmax
    monkeypatch.setattr(fs, "softmax", lambda *a, **k: softmax(*a, **k) * (1 + 1e-4))
    with pytest.raises(AssertionError, match="beyond the bound"):
        harness.check(b"")


def test_missing_error_is_caught(monkeypatch):
    """An axis out of range that does not raise fails the check."""
    data = bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, harness.AXES.index(0)])
    assert harness.decode(data).axis == 0 and harness.decode(data).shape == (3, 3)
    assert harness.check(data) == "ok"
    out_of_range = bytes([0, 0, 1, 0, 0, 0, 0, harness.AXES.index("int"), 250])
    case = harness.decode(out_of_range)
    assert case.shape == (3,) and case.axis not in range(-1, 1)
    assert harness.check(out_of_range) == "AxisError"
    logsumexp = fs.logsumexp
    monkeypatch.setattr(fs, "logsumexp", lambda x, axis=-1, **k: logsumexp(x, **k))
    with pytest.raises(AssertionError, match="no error raised"):
        harness.check(bytes([2, *out_of_range[1:]]))


def test_modified_input_is_caught(monkeypatch):
    log_softmax = fs.log_softmax

    def scribbles(x, *args, **kwargs):
        result = log_softmax(x, *args, **kwargs)
        np.asarray(x).reshape(-1)[0] += 1
        return result

    monkeypatch.setattr(fs, "log_softmax", scribbles)
    with pytest.raises(AssertionError, match="input was modified"):
        harness.check(b"\x01")


@pytest.mark.parametrize(
    ("fault", "says"), [("abort", "signal 6"), ("hang", "exit status 1"), ("mismatch", "exit")]
)
def test_runner_reports_and_saves_failing_input(tmp_path, fault, says):
    done = _fuzz(
        "--inputs", "40", "--jobs", "1", "--seed", "3", "--timeout", "2",
        env={"FASTSOFTMAX_FUZZ_FAULT": fault}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"failed ({says}" in done.stdout
    saved = list((tmp_path / "fuzz-failures").iterdir())
    assert len(saved) == 1
    assert saved[0].read_bytes() == run.FAULT_INPUT
    if fault == "hang":
        assert "Timeout" in done.stderr  # faulthandler's traceback of the hung input
