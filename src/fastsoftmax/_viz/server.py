"""The visualizer's web server: one page, its three static files and a small
JSON API, on 127.0.0.1 only (standard library ``http.server``).

Routes::

    GET  /                  the page (also /index.html)
    GET  /static/viz.js     its script; /static/viz.css its style
    GET  /api/info          version, backends, presets, limits
    GET  /api/softmax?logits=2,1,0.1&temperature=0.5&backend=cpp&target=0&dtype=float64
    POST /api/softmax       the same as a JSON object: {"logits": [2, 1, 0.1], ...}

Input a person can fix gets a 4xx with ``{"error": "..."}``; nothing that a
client sends reaches it as a traceback (an unexpected error is a 500 whose
details go to the server's terminal).
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, TextIO
from urllib.parse import parse_qs, urlsplit

from . import compute

LOOPBACK = "127.0.0.1"
MAX_BODY = 256 * 1024  # bytes of a POST body, more: 413 (10,000 full-precision logits fit)
_DRAIN_LIMIT = 4 * 1024 * 1024  # an oversized body up to this is read and dropped before the 413
_FIELDS = ("logits", "temperature", "backend", "target", "dtype", "curve")
_ALLOWED_HOSTS = ("127.0.0.1", "localhost")

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/viz.js": ("viz.js", "text/javascript; charset=utf-8"),
    "/static/viz.css": ("viz.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
_NOT_FOUND_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Not found</title>"
    "<p>Nothing here. The Softmax Visualizer is at <a href='/'>/</a>.</p>"
)


@functools.cache
def static_file(name: str) -> bytes:
    """A file of the page, read from the installed package (no CDN, no network)."""
    return (resources.files(__package__) / "static" / name).read_bytes()


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str) -> Any:
    raise _HttpError(400, f"{name} is not a number in JSON; logits must be finite numbers")


class Handler(BaseHTTPRequestHandler):
    server_version = "fastsoftmax-viz"
    sys_version = ""
    timeout = 15  # seconds a client may take to send its request
    # A request line with no version gets HTTP/1.0 answers: a status line and
    # headers always, never an HTTP/0.9 body alone.
    default_request_version = "HTTP/1.0"
    server: VizServer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, too many
        headers, a line too long) in the API's JSON form, then close."""
        self.close_connection = True
        self._send_error(code, message or HTTPStatus(code).phrase)

    # ------------------------------------------------------------------ methods

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _not_allowed(self) -> None:
        self._handle(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    # ------------------------------------------------------------------ dispatch

    def _handle(self, method: str) -> None:
        try:
            self._check_host()
            path = urlsplit(self.path).path
            if method not in ("GET", "HEAD", "POST"):
                raise _HttpError(405, f"method {method} is not allowed here")
            if path in _STATIC:
                if method == "POST":
                    raise _HttpError(405, f"POST is not allowed on {path}")
                name, content_type = _STATIC[path]
                self._send(200, static_file(name), content_type, cache=False)
            elif path == "/api/info":
                if method == "POST":
                    raise _HttpError(405, "use GET /api/info")
                self._send_json(200, compute.info())
            elif path == "/api/softmax":
                fields = self._read_json() if method == "POST" else self._read_query()
                self._send_json(200, self._softmax(fields))
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            elif path.startswith("/api/"):
                raise _HttpError(404, f"no such API: {path}; there are /api/info and /api/softmax")
            else:
                self._send(404, _NOT_FOUND_PAGE.encode(), "text/html; charset=utf-8")
        except _HttpError as error:
            self._send_error(error.status, error.message)
        except compute.InputError as error:
            self._send_error(400, str(error))
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # never a traceback to the client
            sys.stderr.write(f"fastsoftmax viz: error on {self.command} {self.path[:200]}\n")
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, "internal error (the details are in the server's terminal)")

    def _check_host(self) -> None:
        """Only names of this machine (no DNS-rebinding through another name)."""
        host = (self.headers.get("Host") or LOOPBACK).strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name not in _ALLOWED_HOSTS:
            raise _HttpError(400, f"unexpected Host header {host[:60]!r}; use {self.server.url}")

    # ------------------------------------------------------------------ input

    def _read_query(self) -> dict[str, Any]:
        query = urlsplit(self.path).query
        try:
            pairs = parse_qs(query, keep_blank_values=True, max_num_fields=len(_FIELDS))
        except ValueError:
            raise _HttpError(400, f"too many query fields; known: {', '.join(_FIELDS)}") from None
        fields = {key: values[-1] for key, values in pairs.items()}
        self._check_fields(fields)
        return fields

    def _read_json(self) -> dict[str, Any]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise _HttpError(411, "send the body with a Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise _HttpError(411, "a POST needs a Content-Length header")
        try:
            length = int(length_text)
        except ValueError:
            raise _HttpError(400, "the Content-Length header is not a number") from None
        if length < 0:
            raise _HttpError(400, "the Content-Length header is negative")
        if length > MAX_BODY:
            self._drain(length)
            raise _HttpError(
                413,
                f"the request body is too large: {length:,} bytes (at most {MAX_BODY:,}); "
                f"send at most {compute.MAX_LOGITS:,} logits",
            )
        body = self.rfile.read(length)
        if len(body) < length:
            raise _HttpError(400, "the request body ended early")
        try:
            fields = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except _HttpError:
            raise
        except UnicodeDecodeError:
            raise _HttpError(400, "the request body is not UTF-8 text") from None
        except RecursionError:
            raise _HttpError(400, "the JSON body is nested too deeply") from None
        except ValueError as error:
            raise _HttpError(400, f"the request body is not valid JSON: {error}") from None
        if not isinstance(fields, dict):
            raise _HttpError(400, 'send a JSON object, e.g. {"logits": [2, 1, 0.1]}')
        self._check_fields(fields)
        return fields

    def _drain(self, length: int) -> None:
        """Read and drop an oversized body (up to a limit) so that the client
        reads the 413 instead of a reset connection; then close."""
        self.close_connection = True
        remaining = min(length, _DRAIN_LIMIT)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    @staticmethod
    def _check_fields(fields: dict[str, Any]) -> None:
        unknown = [str(key) for key in fields if key not in _FIELDS]
        if unknown:
            raise _HttpError(
                400, f"unknown field {unknown[0][:40]!r}; known fields: {', '.join(_FIELDS)}"
            )

    @staticmethod
    def _softmax(fields: dict[str, Any]) -> dict[str, Any]:
        curve = fields.get("curve", True)
        if isinstance(curve, str):
            curve = curve.lower() not in ("0", "false", "no", "")
        return compute.analyze(
            fields.get("logits"),
            fields.get("temperature", 1.0),
            fields.get("backend"),
            fields.get("target"),
            fields.get("dtype"),
            curve=bool(curve),
        )

    # ------------------------------------------------------------------ output

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        for key, value in _SECURITY_HEADERS.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any) -> None:
        text = json.dumps(compute.jsonable(value), allow_nan=False, separators=(",", ":"))
        self._send(status, text.encode(), "application/json")

    def _send_error(self, status: int, message: str) -> None:
        try:
            self._send_json(status, {"error": message, "status": status})
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class VizServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 (port 0: a free one)."""

    daemon_threads = True
    # The listen backlog: the default 5 resets connections when a page's
    # requests (or a test's 24 at once) arrive while the machine is busy.
    request_queue_size = 128

    def __init__(self, port: int = 0, verbose: bool = False) -> None:
        self.verbose = verbose
        super().__init__((LOOPBACK, port), Handler)

    # A closing connection is read on for up to this long and this many bytes
    # (a lingering close): a 413 or 431 goes out before the request has been
    # read to its end, and a socket closed with data unread is reset, which
    # can destroy the reply before the client reads it.
    linger_seconds = 2.0
    linger_bytes = 4 * MAX_BODY

    def shutdown_request(self, request: Any) -> None:
        try:
            request.shutdown(socket.SHUT_WR)  # the reply is complete
            deadline = time.monotonic() + self.linger_seconds
            drained = 0
            while drained < self.linger_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                request.settimeout(left)
                chunk = request.recv(65536)
                if not chunk:  # the client is done
                    break
                drained += len(chunk)
        except OSError:  # reset, or the time is up
            pass
        self.close_request(request)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host name up (getfqdn): not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/"


def make_server(port: int = 0, verbose: bool = False) -> VizServer:
    """A server bound to 127.0.0.1:port, not yet serving."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    return VizServer(port, verbose)


def serve(
    port: int = 0, open_browser: bool = True, verbose: bool = False, out: TextIO | None = None
) -> int:
    """Serve until Ctrl-C (or SIGTERM); 0 on a clean stop, 2 if the port is taken."""
    out = out or sys.stdout
    try:
        server = make_server(port, verbose)
    except OSError as error:
        reason = error.strerror or str(error)
        print(
            f"fastsoftmax viz: cannot listen on {LOOPBACK}:{port}: {reason}"
            " (choose another port with --port, or leave it out for a free one)",
            file=sys.stderr,
        )
        return 2
    url = server.url
    print(f"Softmax Visualizer: {url}", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)
    if open_browser:
        threading.Thread(target=_open, args=(url,), daemon=True).start()
    restore = _stop_on_signals()
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("\nstopped", file=out, flush=True)
    finally:
        server.server_close()
        restore()
    return 0


def _open(url: str) -> None:
    with contextlib.suppress(Exception):  # no browser: the printed URL is enough
        webbrowser.open(url)


def _stop_on_signals() -> Callable[[], None]:
    """Ctrl-C (SIGINT, even where a shell started us with it ignored) and
    SIGTERM stop the server cleanly; main thread only. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


__all__ = ["LOOPBACK", "MAX_BODY", "VizServer", "make_server", "serve"]
