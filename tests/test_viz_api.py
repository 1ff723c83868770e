"""The Softmax Visualizer without a browser: the JSON API, the static files,
bad input, the loopback-only server, ``fastsoftmax show`` and Ctrl-C."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax._viz import cli, compute
from fastsoftmax._viz.server import LOOPBACK, MAX_BODY, make_server, static_file


def call(srv, method, path, body=None, headers=None):
    """(status, headers, parsed JSON or raw bytes)."""
    connection = http.client.HTTPConnection(LOOPBACK, srv.server_address[1], timeout=20)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return response.status, response, data
    finally:
        connection.close()


def softmax_api(srv, **fields):
    status, _, data = call(srv, "POST", "/api/softmax", fields)
    assert status == 200, data
    return data


def as_float(v):
    return float(v) if isinstance(v, str) else v  # "inf" / "NaN" travel as strings


# ----------------------------------------------------------------- the numbers


@pytest.mark.parametrize(
    ("logits", "temperature", "expected"),
    [
        ([2.0, 1.0, 0.1], 1.0, [0.659, 0.242, 0.099]),
        ([10, 9, 9], 1.0, [0.576, 0.212, 0.212]),
        ([2.0, 1.0, 0.1], 0.5, [0.864, 0.117, 0.019]),
        ([2.0, 1.0, 0.1], 2.0, [0.502, 0.304, 0.194]),
    ],
)
def test_spec_examples_on_every_backend(server, logits, temperature, expected):
    for backend in fs.backends():
        r = softmax_api(server, logits=logits, temperature=temperature, backend=backend)
        assert r["backend"] == backend
        assert np.round(r["probabilities"], 3).tolist() == expected
        want = fs.softmax(np.array(logits, float), temperature=temperature, backend=backend)
        assert r["probabilities"] == want.tolist()  # exactly: the package computed them
        assert r["sum"] == pytest.approx(1.0, abs=1e-15)
        assert r["argmax"] == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_temperature_beyond_the_dtype_is_the_uniform_limit(dtype):
    # 3.4028235677973366e38 rounds to inf in float32: casting it for the
    # textbook columns raised an overflow warning (an HTTP 500 on the page).
    result = compute.analyze([0.0, 1.0, -2.0], temperature=3.4028235677973366e38, dtype=dtype)
    for p in (result["probabilities"], result["naive"]["probabilities"]):
        np.testing.assert_allclose(np.asarray(p, np.float64), [1 / 3] * 3, rtol=1e-6)


def test_result_fields(server):
    x = np.array([2.0, 1.0, 0.1])
    r = softmax_api(server, logits="2, 1, 0.1", temperature=0.5, target=2)
    assert r["logits"] == x.tolist() and r["n"] == 3 and r["temperature"] == 0.5
    assert r["backend"] == fs.backends()[0] and r["backends"] == list(fs.backends())
    assert r["stable"]["exp"] == pytest.approx(np.exp((x - 2) / 0.5).tolist(), rel=1e-15)
    assert r["naive"]["exp"] == pytest.approx(np.exp(x / 0.5).tolist(), rel=1e-15)
    assert r["naive"]["ok"] and not r["naive"]["overflow"]
    assert r["naive"]["probabilities"] == pytest.approx(r["probabilities"], rel=1e-14)
    p = np.array(r["probabilities"])
    assert r["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-13)
    assert r["entropy_bits"] == pytest.approx(r["entropy"] / math.log(2))
    assert r["max_entropy"] == pytest.approx(math.log(3))
    assert r["log_probabilities"] == fs.log_softmax(x, temperature=0.5).tolist()
    assert r["logsumexp"] == float(fs.logsumexp(x, temperature=0.5))


def test_temperature_curve(server):
    x = np.array([2.0, 1.0, 0.1])
    curve = softmax_api(server, logits=x.tolist(), backend="numpy")["curve"]
    t = np.array(curve["temperatures"])
    assert t[0] == pytest.approx(0.05) and t[-1] == pytest.approx(10) and (np.diff(t) > 0).all()
    assert curve["classes"] == [0, 1, 2] and curve["all_classes"]
    for j in (0, len(t) // 2, len(t) - 1):
        want = fs.softmax(x, temperature=float(t[j]), backend="numpy")
        assert [row[j] for row in curve["probabilities"]] == want.tolist()
    # Many classes: the curve follows the largest logits only.
    many = softmax_api(server, logits=list(range(20)))["curve"]
    assert many["classes"] == list(range(12, 20)) and not many["all_classes"]


def test_large_logits_naive_overflows_stable_does_not(server):
    x = [1000.0, 999.0, 998.0]
    r = softmax_api(server, logits=x)
    assert r["naive"]["exp"] == ["inf", "inf", "inf"]
    assert r["naive"]["sum"] == "inf" and r["naive"]["probabilities"] == ["NaN"] * 3
    assert r["naive"]["overflow"] and not r["naive"]["ok"]
    assert r["naive"]["overflow_threshold"] == pytest.approx(709.78, abs=0.01)
    best = fs.backends()[0]
    assert r["probabilities"] == fs.softmax(np.array(x), backend=best).tolist()
    assert r["stable"]["exp"][0] == 1.0
    # float32 overflows already past 88.7
    r32 = softmax_api(server, logits=[100, 99, 98], dtype="float32")
    assert r32["naive"]["overflow"] and r32["dtype"] == "float32"
    assert r32["naive"]["overflow_threshold"] == pytest.approx(88.72, abs=0.01)
    assert r32["probabilities"] == fs.softmax(np.float32([100, 99, 98]), backend=best).tolist()


def test_cross_entropy_and_softmax_applied_twice(server):
    x = np.array([2.0, 1.0, 0.1])
    for target in range(3):
        ce = softmax_api(server, logits=x.tolist(), target=target)["cross_entropy"]
        assert ce["target"] == target
        assert ce["correct"] == pytest.approx(float(fs.logsumexp(x)) - x[target], rel=1e-14)
        p = fs.softmax(x)
        assert ce["applied_twice"] == pytest.approx(float(fs.logsumexp(p)) - p[target], rel=1e-14)
        assert ce["probability"] == pytest.approx(p[target], rel=1e-15)
        assert (
            ce["applied_twice"]
            >= ce["applied_twice_floor"]
            == pytest.approx(math.log1p(2 / math.e))
        )
        text = ce["warning"].lower()
        assert "softmax" in text and "applied" in text and ("logits" in text or "raw" in text)
        if hasattr(fs, "SoftmaxAppliedTwiceWarning") and hasattr(fs, "cross_entropy"):
            assert ce["warning_source"] == "fastsoftmax.SoftmaxAppliedTwiceWarning"
    # Temperature applies to the loss of the logits as to the page.
    ce = softmax_api(server, logits=x.tolist(), temperature=2, target=1)["cross_entropy"]
    assert ce["correct"] == pytest.approx(-float(fs.log_softmax(x, temperature=2)[1]), rel=1e-14)


def test_logits_that_look_like_probabilities(server):
    """[0.5, 0.5] makes cross_entropy warn about its logits: no leak, no error."""
    r = softmax_api(server, logits=[0.5, 0.5], target=1)
    assert r["probabilities"] == [0.5, 0.5]
    assert r["cross_entropy"]["correct"] == pytest.approx(math.log(2), rel=1e-14)


def test_fallback_cross_entropy(monkeypatch):
    """Without fastsoftmax.cross_entropy: logsumexp, and the viz's own warning."""
    monkeypatch.delattr(fs, "cross_entropy", raising=False)
    monkeypatch.delattr(fs, "SoftmaxAppliedTwiceWarning", raising=False)
    ce = compute.analyze([2.0, 1.0, 0.1], target=0, curve=False)["cross_entropy"]
    assert ce["source"] == "fastsoftmax.logsumexp" and ce["warning_source"] == "viz"
    assert ce["warning"] == compute.FALLBACK_TWICE_WARNING
    assert ce["correct"] == pytest.approx(-math.log(0.6590011388859679), rel=1e-14)


def test_get_with_query_and_backend_switch(server):
    for backend in fs.backends():
        status, _, r = call(
            server, "GET", f"/api/softmax?logits=2,1,0.1&temperature=0.5&backend={backend}&curve=0"
        )
        assert status == 200 and r["backend"] == backend and "curve" not in r
        assert np.round(r["probabilities"], 3).tolist() == [0.864, 0.117, 0.019]


def test_info(server):
    status, _, info = call(server, "GET", "/api/info")
    assert status == 200
    assert info["version"] == fs.__version__ and info["backends"] == list(fs.backends())
    assert info["default_backend"] == fs.backends()[0]
    names = [p["logits"] for p in info["presets"]]
    assert [2.0, 1.0, 0.1] in names and [10, 9, 9] in names and [1000, 999, 998] in names
    assert info["limits"]["max_logits"] == compute.MAX_LOGITS


# ----------------------------------------------------------------- page and files


def test_page_and_static_files_are_served_from_the_package(server):
    status, response, page = call(server, "GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert b"/static/viz.js" in page and b"/static/viz.css" in page
    assert "default-src 'none'" in response.getheader("Content-Security-Policy")
    for path, kind in (("/static/viz.js", "text/javascript"), ("/static/viz.css", "text/css")):
        status, response, body = call(server, "GET", path)
        assert status == 200 and response.getheader("Content-Type").startswith(kind)
        assert body == static_file(path.rsplit("/", 1)[1])
    # No CDN, nothing from the internet: no absolute URL but the SVG namespace.
    for name in ("index.html", "viz.js", "viz.css"):
        text = static_file(name).decode()
        urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    # The installed package carries them (the wheel ships static/).
    installed = Path(fs.__file__).parent / "_viz" / "static"
    assert {p.name for p in installed.iterdir()} >= {"index.html", "viz.js", "viz.css"}
    status, response, body = call(server, "HEAD", "/")
    assert status == 200 and body == b""


def test_server_listens_on_loopback_only(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(ValueError):
        make_server(70000)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("logits", "words"),
    [
        ("", "no logits"),
        ("   ", "no logits"),
        ("[]", "no logits"),
        ([], "no logits"),
        (None, "no logits"),
        ("1, two, 3", "not a number"),
        ("1, 0x10", "not a number"),
        ("1, nan", "finite"),
        ("inf, 1", "finite"),
        ("-Infinity", "finite"),
        ("1e400", "finite"),
        ([1, "x"], "not a number"),
        ([1, [2, 3]], "flat list"),
        ([1, True], "not a number"),
        ([10**400], "too large"),
        ({"a": 1}, "list of numbers"),
        (42, "list of numbers"),
        (",".join(["1"] * (compute.MAX_LOGITS + 1)), "too many logits"),
        ([0.5] * (compute.MAX_LOGITS + 1), "too many logits"),
    ],
)
def test_bad_logits_are_a_400_with_a_message(server, logits, words):
    status, _, data = call(server, "POST", "/api/softmax", {"logits": logits})
    assert status == 400, data
    assert words in data["error"] and "Traceback" not in data["error"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"temperature": 0}, "positive"),
        ({"temperature": -1}, "positive"),
        ({"temperature": "abc"}, "number"),
        ({"temperature": [1]}, "number"),
        ({"temperature": "1e309"}, "positive and finite"),
        ({"temperature": "nan"}, "positive and finite"),
        ({"backend": "cuda"}, "available: " + ", ".join(fs.backends())),
        ({"backend": 3}, "unknown"),
        ({"target": 3}, "out of range"),
        ({"target": -1}, "out of range"),
        ({"target": "zero"}, "class index"),
        ({"dtype": "float16"}, "dtype"),
        ({"temprature": 2}, "unknown field"),
    ],
)
def test_bad_options_are_a_400(server, fields, words):
    status, _, data = call(server, "POST", "/api/softmax", {"logits": [2, 1, 0.1], **fields})
    assert status == 400 and words in data["error"], data


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"logits": [1, NaN]}', "NaN"),
        (b'{"logits": [Infinity]}', "Infinity"),
        (b"[1, 2, 3]", "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        (b"[" * 60000, "JSON"),
    ],
)
def test_malformed_bodies_are_a_400(server, body, words):
    status, _, data = call(server, "POST", "/api/softmax", body)
    assert status == 400 and words in data["error"], data


def test_the_most_logits_in_full_precision(server):
    x = np.random.default_rng(7).standard_normal(compute.MAX_LOGITS) * 5
    r = softmax_api(server, logits=x.tolist(), target=9_999)
    best = fs.backends()[0]
    assert r["n"] == compute.MAX_LOGITS and len(r["curve"]["classes"]) == 8
    assert r["probabilities"] == fs.softmax(x, backend=best).tolist()
    typed = softmax_api(server, logits=", ".join(map(repr, x.tolist())), curve=False)
    assert typed["probabilities"] == r["probabilities"]


def test_huge_body_is_a_413(server):
    body = json.dumps({"logits": [1.5] * 100_000}).encode()
    assert len(body) > MAX_BODY
    status, _, data = call(server, "POST", "/api/softmax", body)
    assert status == 413 and "too large" in data["error"]
    # A Content-Length far beyond the limit is refused before any body arrives.
    with socket.create_connection((LOOPBACK, server.server_address[1]), timeout=10) as s:
        s.sendall(
            b"POST /api/softmax HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 999999999999\r\n\r\n{"
        )
        s.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.0 413")


def test_post_without_length_and_odd_methods(server):
    with socket.create_connection((LOOPBACK, server.server_address[1]), timeout=10) as s:
        s.sendall(b"POST /api/softmax HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.0 411")
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        status, _, data = call(server, method, "/api/softmax", b"{}")
        assert status == 405 and "not allowed" in data["error"]
    status, _, data = call(server, "POST", "/api/info", b"{}")
    assert status == 405


def test_unknown_paths_are_a_404(server):
    status, _, data = call(server, "GET", "/api/nothing")
    assert status == 404 and "/api/softmax" in data["error"]
    for path in ("/nothing", "/static/../compute.py", "/static/compute.py", "/%2e%2e/etc/passwd"):
        status, _, body = call(server, "GET", path)
        assert status == 404 and b"Softmax Visualizer" in body, path


def test_foreign_host_header_is_refused(server):
    status, _, data = call(server, "GET", "/api/info", headers={"Host": "evil.example:80"})
    assert status == 400 and "Host" in data["error"]
    status, _, _ = call(server, "GET", "/api/info", headers={"Host": "localhost:1234"})
    assert status == 200


def test_many_requests_at_once_all_answered(server):
    results = []

    def worker(i):
        body = {"logits": [i, 1, 0.1]} if i % 3 else {"logits": "bad"}
        results.append(call(server, "POST", "/api/softmax", body)[0])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted(400 if i % 3 == 0 else 200 for i in range(24))
    assert call(server, "GET", "/api/info")[0] == 200  # still serving


def test_internal_errors_are_a_500_without_traceback(server, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(compute, "analyze", broken)
    status, _, data = call(server, "POST", "/api/softmax", {"logits": [1]})
    assert status == 500 and "secret" not in data["error"] and "Traceback" not in data["error"]
    assert "secret detail" in capsys.readouterr().err  # logged where the server runs


# ----------------------------------------------------------------- the terminal


def run_cli(*argv):
    return cli.main(list(argv))


def test_show_prints_the_numbers(capsys):
    assert run_cli("show", "2", "1", "0.1", "--temperature", "0.5") == 0
    out = capsys.readouterr().out
    for value in ("0.864", "0.117", "0.019", "1.000"):
        assert value in out
    assert "<- argmax" in out.splitlines()[3] and "entropy" in out
    assert "no overflow" in out


def test_show_large_logits_target_and_backend(capsys):
    assert run_cli("show", "[1000, 999, 998]", "--target", "1", "--backend", "numpy") == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "NaN" in out and "overflows" in out
    assert "0.665" in out and "cross-entropy of class 1" in out and "applied twice" in out


@pytest.mark.parametrize(
    "argv",
    [
        ("show", "1", "abc"),
        ("show", "1", "nan"),
        ("show", "1", "2", "-t", "0"),
        ("show", "1", "--backend", "gpu"),
        ("show", "1", "2", "--target", "5"),
    ],
)
def test_show_bad_input_exit_2(capsys, argv):
    assert run_cli(*argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("fastsoftmax show: ") and "Traceback" not in captured.err


def test_add_commands_registers_viz_and_show():
    import argparse

    parser = argparse.ArgumentParser(prog="fastsoftmax")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["viz", "--port", "8123", "--no-browser"])
    assert args.run is cli.run_viz and args.port == 8123 and args.no_browser
    args = parser.parse_args(["show", "-1", "2", "-t", "2"])
    assert args.run is cli.run_show and args.logits == ["-1", "2"]
    with pytest.raises(SystemExit):
        parser.parse_args(["viz", "--port", "99999"])


def _viz_module() -> str:
    """``python -m fastsoftmax viz`` once the command line has the subcommand,
    else the viz package's own entry point (the same code)."""
    probe = subprocess.run(
        [sys.executable, "-m", "fastsoftmax", "viz", "--help"], capture_output=True, timeout=60
    )
    return "fastsoftmax" if probe.returncode == 0 else "fastsoftmax._viz"


def test_viz_command_serves_and_stops_on_ctrl_c():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", _viz_module(), "viz", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:  # stop the server first: its stderr stays open while it runs
            process.kill()
            pytest.fail(f"no address in {line!r}; stderr: {process.communicate()[1]}")
        port = int(match.group(1))
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=20)
        connection.request("GET", "/api/softmax?logits=10,9,9&curve=0")
        data = json.loads(connection.getresponse().read())
        connection.close()
        assert np.round(data["probabilities"], 3).tolist() == [0.576, 0.212, 0.212]
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_viz_command_port_in_use(capsys):
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen(1)
        port = s.getsockname()[1]
        from fastsoftmax._viz import server as viz_server

        assert viz_server.serve(port, open_browser=False) == 2
    assert "cannot listen" in capsys.readouterr().err
