"""`fastsoftmax bench` and `fastsoftmax accuracy`: tiny runs that check what the
commands print and write, never how fast anything is."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _accuracy, _bench
from fastsoftmax.__main__ import main

TINY = ["--repeats", "3", "--min-time", "0.0002", "--no-progress"]
OURS = ",".join(fs.backends())
REPO = Path(__file__).resolve().parents[1]


def _bench_json(tmp_path, name: str, *extra: str) -> dict:
    path = tmp_path / name
    assert main(["bench", "--case", "1x3", "--only", OURS, "--json", str(path), *TINY, *extra]) == 0
    return json.loads(path.read_text())


def test_console_command_prints_the_table():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastsoftmax",
            "bench",
            "--case",
            "float32 1x3",
            "--only",
            "cpp,numpy" if "cpp" in fs.backends() else "numpy",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    for column in _bench.COLUMNS:
        assert column in out
    assert "softmax float32 1x3" in out
    assert "copy (np.copyto)" in out
    assert "numpy" in out and "1.00x" in out


def test_json_has_machine_versions_and_every_sample(tmp_path):
    document = _bench_json(tmp_path, "run.json")
    assert document["schema"] == _bench.SCHEMA
    assert {"cpu", "simd_level", "caches", "flags"} <= set(document["machine"])
    assert document["versions"]["numpy"] == np.__version__
    assert document["versions"]["fastsoftmax"] == fs.__version__
    assert document["settings"]["threads"] == 1
    assert "noisy" in document["noise"]
    (case,) = document["cases"]
    assert case["key"] == "softmax/float32/1x3/axis-1"
    assert case["input_bytes"] == 12 and case["output_bytes"] == 12
    names = {r["implementation"] for r in case["results"]}
    assert set(fs.backends()) | {"copy"} <= names
    for r in case["results"]:
        assert len(r["samples"]) == 3 and r["number"] >= 1
        assert r["q1"] <= r["median"] <= r["q3"]
        assert r["gbps"] > 0 and r["fraction_of_copy"] > 0
    numpy = next(r for r in case["results"] if r["implementation"] == "numpy")
    assert numpy["speedup_vs_numpy"] == 1.0


def test_the_run_restores_threads_and_affinity(tmp_path):
    threads = fs.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    _bench_json(tmp_path, "run.json", "--threads", "1")
    assert fs.get_num_threads() == threads
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity


def test_compare_shows_two_runs_side_by_side(tmp_path, capsys):
    _bench_json(tmp_path, "a.json")
    _bench_json(tmp_path, "b.json", "--dtype", "float64")
    capsys.readouterr()
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "softmax float32 1x3" in out and "softmax float64 1x3" in out
    assert "A time" in out and "B time" in out and "B vs A" in out


def test_compare_refuses_other_files(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text("{}")
    assert main(["bench", "--compare", str(other), str(other)]) == 2
    assert "not a fastsoftmax bench file" in capsys.readouterr().err


def test_markdown_tables_and_show(tmp_path, capsys):
    _bench_json(tmp_path, "run.json", "--markdown")
    out = capsys.readouterr().out
    assert "| case |" in out and "Speedup over the NumPy reference" in out
    assert main(["bench", "--show", str(tmp_path / "run.json"), "--markdown"]) == 0
    assert "| softmax float32 1x3 |" in capsys.readouterr().out


def test_a_wrong_result_is_reported_not_timed():
    case = _bench.Case("softmax", "float32", (2, 5))

    def broken(case, x):
        return lambda: np.zeros_like(x)

    bad = _bench.Contender("broken", "backend", broken)
    (measured, copy) = _bench.measure_case(
        case, [bad], _bench.Settings(repeats=2, min_sample_time=1e-4, warmup_time=0)
    )
    assert measured.error.startswith("AssertionError") and not measured.samples
    assert copy.samples


@pytest.mark.parametrize("name", ["cpp-out", *fs.backends()])
def test_backends_are_timed_as_users_call_them(name):
    # A call through a ** dict of options (even an empty one) took 0.6 us more than
    # fs.softmax(x, axis=-1) on a 1x3 row: a third of the call the bench reported.
    import dis

    case = _bench.Case("softmax", "float32", (1, 3))
    contender = dict((c.name, c) for c in _bench.load_contenders([name])[0])[name]
    call = contender.prepare(case, case.make_input())
    instructions = list(dis.get_instructions(call))
    operations = {i.opname for i in instructions}
    assert "CALL_FUNCTION_EX" not in operations and "DICT_MERGE" not in operations
    consts = call.__code__.co_consts
    keywords = {k for i in instructions if i.opname == "KW_NAMES" for k in consts[i.arg]}
    default = name.removesuffix("-out") == fs.backends()[0]
    assert ("backend" in keywords) != default  # the default backend goes unnamed
    result = call()
    np.testing.assert_allclose(np.asarray(result), fs.softmax(case.make_input()), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_preallocated_outputs_take_the_inputs_alignment(dtype):
    """Every contender's out= array starts at the input's address modulo 64,
    so no contender stores at a luckier alignment than another."""
    block = np.empty(4096 + 64, dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    for skip in range(64 // itemsize):
        x = block[skip : skip + 4096].reshape(64, 64)
        for shape in ((64, 64), (64,), (2, 4, 8)):
            out = _bench.output_like(x, shape)
            assert out.shape == shape and out.dtype == x.dtype
            assert out.flags.c_contiguous and out.flags.writeable
            assert out.ctypes.data % 64 == x.ctypes.data % 64
            assert not np.shares_memory(out, x)
    odd = np.frombuffer(bytearray(8 * itemsize + 1), dtype=np.uint8)[1:].view(dtype)
    with pytest.raises(ValueError, match="item size"):
        _bench.output_like(odd, odd.shape)


def test_case_selection():
    quick = _bench.select_cases(quick=True)
    assert [c.shape_text for c in quick] == list(_bench.QUICK_SHAPES)
    full = _bench.select_cases()
    assert {c.shape_text for c in full} >= {"1x3", "4x4000000", "256x32000", "32x131072"}
    assert any(c.axis == 0 for c in full) and any(c.dtype == "float64" for c in full)
    assert all(c.dtype == "float64" for c in _bench.select_cases(dtype="float64"))
    assert _bench.select_cases(("logsumexp",), patterns=["1x3"])[0].output_bytes == 4
    (causal,) = _bench.select_cases(patterns=["causal"])
    assert causal.key == "softmax/float32/1024x1024/axis-1/causal"
    x = causal.make_input()
    assert np.isneginf(x[np.triu_indices(1024, 1)]).all()
    assert np.isfinite(x[np.tril_indices(1024)]).all()
    np.testing.assert_array_equal(
        _bench.Case("softmax", "float32", (1, 3)).make_input(), np.float32([[2.0, 1.0, 0.1]])
    )


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert (
        main(
            [
                "bench",
                "--case",
                "1x3",
                "--only",
                "numpy",
                "--plot",
                str(path),
                "--sweep-total",
                "4096",
                *TINY,
            ]
        )
        == 0
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_implementation_is_an_error(capsys):
    assert main(["bench", "--only", "nosuch", "--case", "1x3", *TINY]) == 2
    assert "unknown implementation" in capsys.readouterr().err


def test_accuracy_quick_reports_ulp_for_every_backend(tmp_path, capsys):
    path = tmp_path / "accuracy.json"
    assert main(["accuracy", "--quick", "--only", OURS, "--no-progress", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "max ULP" in out and "exp kernel" in out
    document = json.loads(path.read_text())
    names = {r["implementation"] for r in document["functions"]}
    expected = {n for n in fs.backends() if n != "cpp"}
    expected |= {f"cpp {level}" for level in fs.info()["simd_levels"]}
    assert names == expected
    for r in document["functions"]:
        assert "error" not in r, r
        assert r["max_ulp"] >= 0 and r["values"] > 0
        # Our backends keep the bound of README, "Accuracy contract", on the random rows at least.
        if r["max_of_spec_bound_input"].startswith("N(0,3)"):
            assert r["max_of_spec_bound"] <= 1
    assert {(r["dtype"], r["function"]) for r in document["functions"]} == {
        (d, f)
        for d in ("float32", "float64", "float16")
        for f in ("softmax", "log_softmax", "logsumexp")
    }
    exp = [r for r in document["exp"] if "max_ulp" in r]
    assert {r["implementation"] for r in exp} >= {f"cpp {lv}" for lv in fs.info()["simd_levels"]}
    assert main(["accuracy", "--show", str(path), "--markdown"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("# Accuracy\n") and "| float32 | numpy |" in page
    assert "## Summary" in page and document["created"] in page


@pytest.mark.parametrize("command", ["info", "demo"])
def test_the_first_commands_still_work(command, capsys):
    assert main([command]) == 0
    assert "fastsoftmax" in capsys.readouterr().out or command == "info"


def test_show_writes_one_page_of_several_runs(tmp_path, capsys):
    _bench_json(tmp_path, "a.json")
    _bench_json(tmp_path, "b.json", "--dtype", "float64")
    capsys.readouterr()
    a, b, page = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "docs" / "page.md"
    assert main(["bench", "--show", str(a), str(b), "--output", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    text = page.read_text()
    assert text.startswith("# Benchmarks\n") and text.endswith("|\n")
    assert text.count("\n## softmax (") == 2 and "## Summary" in text
    assert "| softmax float32 1x3 |" in text and "| softmax float64 1x3 |" in text
    assert f"--show {a} {b} --output {page}" in text
    assert "(../a.json)" in text  # links relative to the page
    for document in (json.loads(a.read_text()), json.loads(b.read_text())):
        assert document["created"] in text and document["machine"]["cpu"] in text
    # The same page on stdout with --markdown (links relative to here).
    assert main(["bench", "--show", str(a), str(b), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Benchmarks\n")
    # Without --markdown: each run as plain tables.
    assert main(["bench", "--show", str(a), str(b)]) == 0
    assert capsys.readouterr().out.count("\nCPU: ") == 2


def test_output_needs_saved_runs(tmp_path, capsys):
    page = str(tmp_path / "page.md")
    assert main(["bench", "--case", "1x3", "--output", page, *TINY]) == 2
    assert main(["accuracy", "--quick", "--output", page]) == 2
    assert "use --show" in capsys.readouterr().err
    assert not os.path.exists(page)


PAGES = [("docs/benchmarks.md", _bench.SCHEMA), ("docs/accuracy.md", _accuracy.SCHEMA)]


def _page_command(page: str) -> list[str]:
    """The command a generated page says it was written by."""
    match = re.search(r"by `(fastsoftmax [^`]+)`", (REPO / page).read_text())
    assert match, f"{page} does not say which command generates it"
    return shlex.split(match.group(1))


@pytest.mark.parametrize(("page", "schema"), PAGES)
def test_committed_pages_are_what_the_command_generates(page, schema, tmp_path, monkeypatch):
    """docs/benchmarks.md and docs/accuracy.md are exactly what their command writes from
    the committed JSON of bench/results, and they show every such run: after new runs,
    rerun the command (README, "Benchmarks" and "Accuracy")."""
    command = _page_command(page)
    assert command[:3] == ["fastsoftmax", "bench" if "bench" in schema else "accuracy", "--show"]
    assert command[-2:] == ["--output", page]
    shown = command[3:-2]
    saved = sorted(
        path.relative_to(REPO).as_posix()
        for path in (REPO / "bench" / "results").glob("*.json")
        if json.loads(path.read_text()).get("schema") == schema
    )
    assert sorted(shown) == saved, f"{page} shows {shown}; bench/results holds {saved}"
    # Run in a copy of the layout, so that the test never writes into the checkout.
    for name in shown:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    assert (tmp_path / page).read_text() == (REPO / page).read_text(), (
        f"{page} is out of date: run `{shlex.join(command)}`"
    )


@pytest.mark.parametrize(("page", "schema"), PAGES)
def test_readme_shows_the_pages_summaries_and_commands(page, schema):
    """README's benchmark and accuracy tables are the Summary sections of the pages,
    and README gives the command that writes each page."""
    readme = (REPO / "README.md").read_text()
    summary = re.search(r"\n## Summary\n\n(.*?)\n\n## ", (REPO / page).read_text(), re.S)
    assert summary, f"{page} has no Summary section"
    assert summary.group(1) in readme, f"README does not show the Summary of {page}"
    assert shlex.join(_page_command(page)) in readme


# --------------------------------------------------------------------------------------
# ONNX Runtime as a peer: session.run (onnxruntime) and IOBinding (onnxruntime-io)

ORT = list(_bench.ORT_PEERS)


def _ort_contenders() -> list[_bench.Contender]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    contenders, missing = _bench.load_contenders(ORT)
    assert not missing
    assert [c.name for c in contenders] == ORT
    return contenders


@pytest.mark.parametrize("function", _bench.FUNCTIONS)
def test_onnxruntime_contenders_pass_the_check(function):
    import onnxruntime

    contenders = _ort_contenders()
    for contender in contenders:
        assert contender.kind == "peer" and contender.version == onnxruntime.__version__
    for dtype in ("float32", "float64"):
        for axis in (-1, 0):
            case = _bench.Case(function, dtype, (6, 37), axis)
            x = case.make_input()
            expected = _bench.reference(case, x)
            for contender in contenders:
                call = contender.prepare(case, x)
                result = contender.to_numpy(call())
                assert result.dtype == np.dtype(dtype), (contender.name, case.label)
                _bench.check(case, result, expected, "peer")
                # Held to our backends' tolerance too: the model computes what is asked
                # (a wrong axis or keepdims fails here, not only a broken kernel).
                _bench.check(case, result, expected, "backend")
            io = contenders[1]
            call = io.prepare(case, x)
            out = io.to_numpy(call())
            out[...] = np.nan
            assert io.to_numpy(call()) is out  # the preallocated array, written again
            _bench.check(case, out, expected, "peer")


def test_onnxruntime_sessions_get_the_bench_thread_count(monkeypatch):
    import onnxruntime

    contenders = _ort_contenders()
    created = []
    session_class = onnxruntime.InferenceSession

    def recording(model, options, providers):
        created.append((options.intra_op_num_threads, options.inter_op_num_threads, providers))
        return session_class(model, options, providers=providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    case = _bench.Case("softmax", "float32", (2, 5))
    x = case.make_input()
    previous = _bench._set_peer_threads(contenders, 3)
    for contender in contenders:
        contender.prepare(case, x)
    _bench._restore_peer_threads(previous)
    for contender in contenders:
        contender.prepare(case, x)  # unset: fastsoftmax's count, which the bench sets too
    default = fs.get_num_threads()
    cpu = ["CPUExecutionProvider"]
    assert created == [(3, 3, cpu)] * 2 + [(default, default, cpu)] * 2


def test_a_quick_run_times_both_onnxruntime_contenders(tmp_path, capsys):
    import onnxruntime

    _ort_contenders()
    path = tmp_path / "ort.json"
    argv = [
        "bench",
        "--function",
        "all",
        "--case",
        "float32 1x3",
        "--only",
        "numpy," + ",".join(ORT),
    ]
    assert main([*argv, "--json", str(path), *TINY]) == 0
    out = capsys.readouterr().out
    assert f"onnxruntime {onnxruntime.__version__}" in out
    document = json.loads(path.read_text())
    assert document["versions"]["onnxruntime"] == onnxruntime.__version__
    assert document["settings"]["implementations"] == ["numpy", *ORT]
    assert [c["function"] for c in document["cases"]] == list(_bench.FUNCTIONS)
    for case in document["cases"]:
        by = {r["implementation"]: r for r in case["results"]}
        for name in ORT:
            assert "error" not in by[name], by[name]
            assert len(by[name]["samples"]) == 3
    rows = [line.split() for line in out.splitlines()]
    for name in ORT:
        timed = [r for r in rows if r[:2] == [name, "(peer)"] and r[2] != "failed"]
        assert len(timed) == len(_bench.FUNCTIONS), name


def test_a_missing_onnxruntime_is_reported_not_an_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    contenders, missing = _bench.load_contenders(["numpy", *ORT])
    assert [c.name for c in contenders] == ["numpy"]
    assert set(missing) == set(ORT)
    for reason in missing.values():
        assert reason.startswith("not installed (ModuleNotFoundError") and "onnxruntime" in reason
    assert main(["bench", "--case", "float32 1x3", "--only", "numpy,onnxruntime", *TINY]) == 0
    assert "not measured: onnxruntime (not installed" in capsys.readouterr().out


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or not os.path.exists("/proc/cpuinfo"),
    reason="family and model numbers: x86 Linux",
)
def test_machine_info_names_cpu_family_and_model(tmp_path, capsys):
    text = Path("/proc/cpuinfo").read_text()
    family = int(re.search(r"^cpu family\s*:\s*(\d+)", text, re.M).group(1))
    model = int(re.search(r"^model\s*:\s*(\d+)", text, re.M).group(1))
    machine = _bench.machine_info()
    assert (machine["cpu_family"], machine["cpu_model"]) == (family, model)
    named = f"{machine['cpu']} (family {family}, model {model}, "
    assert _bench.cpu_text(machine).startswith(named)
    if "cpp" in fs.info()["backends"]:  # the defaults the kernels chose for this CPU
        from fastsoftmax import _core

        assert machine["kernel_tuning"] == {
            "group_bytes": _core.group_bytes(),
            "online_base_bytes": _core.online_base_bytes(),
            "block_rows_in_groups": _core.block_rows_in_groups(),
            "online_row_bytes": _core.online_row_bytes(),
        }
    # In the header of a run, plain and markdown, with the SIMD level it ran.
    for extra in ((), ("--markdown",)):
        _bench_json(tmp_path, "run.json", *extra)
        header = capsys.readouterr().out.split("\n\n")[0]
        assert named in header and f"SIMD {fs.info()['simd_level']}" in header
    # A run saved before these fields renders as it did.
    old = {k: v for k, v in machine.items() if k not in ("cpu_family", "cpu_model")}
    assert "family" not in _bench.cpu_text(old)
