"""``tandem dashboard``: a live, offline web dashboard over run directories.

A stdlib :class:`~http.server.ThreadingHTTPServer` serves a static page
(``dashboard/static``: html, css, js) plus ``plotly.min.js`` from the installed plotly
package, so nothing is fetched from the internet, and a small JSON API that the page polls
every 1.5 s:

=================================  ===========================================================
``GET /api/runs``                  every run's summary (status, progress, reuse) and issues
``GET /api/run/<id>/metrics``      rows ``?since=N`` .. end, columnar (incremental reads)
``GET /api/run/<id>/config``       the run's ``config.yaml`` as text
``GET /api/groups?x=..&ids=..``    median and min-max band of each group of seeds in ``ids``
=================================  ===========================================================

Each ``/api/runs`` request rescans the run directories (at most once a second) and reads
the bytes appended to every ``metrics.jsonl``, so new runs and rows appear without a reload.
Problems with the input (missing directory, malformed line) show in the page and are
printed once on the console.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from tandem.core.metrics import RETURN_WINDOW
from tandem.dashboard.data import DEFAULT_STALE_S, Issue, RunStore

STATIC_DIR = Path(__file__).parent / "static"
_STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "index.html": "text/html"}


def plotly_js_path() -> Path:
    """``plotly.min.js`` inside the installed plotly package (the page's only dependency)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.min.js not found at {path}; reinstall plotly")
    return path


def print_issues(
    issues: Sequence[Issue], stream: TextIO | None = None, prog: str = "tandem dashboard"
) -> None:
    """One console line per issue, e.g. ``tandem dashboard: error: runs/x/metrics.jsonl line 4: ...``."""
    stream = stream or sys.stderr
    for issue in issues:
        print(f"{prog}: {issue.level}: {issue.message}", file=stream, flush=True)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_name(header: str) -> str:
    """The host part of a Host header: ``[::1]:8050`` -> ``::1``, ``Example.com.:80`` -> ``example.com``."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """Host header names this server answers; None: any IP literal as well.

    A page from another site can make the browser send requests here under the attacker's own
    DNS name once that name resolves to 127.0.0.1 (DNS rebinding); the Host header still
    carries the attacker's name, so only names that mean this machine are answered. Bound to
    a non-loopback address the user reaches it by IP or by this machine's names.
    """
    names = set(LOOPBACK_NAMES) | {_host_name(bind_host)}
    if _host_name(bind_host) in LOOPBACK_NAMES:
        return frozenset(names)
    names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names) | {"*ip"}


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    if not header:
        return False
    name = _host_name(header)
    return name in allowed or ("*ip" in allowed and _is_ip(name))


class DashboardHandler(BaseHTTPRequestHandler):
    """Routes GET requests to the static files and the JSON API of ``server.store``."""

    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per poll would drown the console; problems are printed as issues

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if not host_allowed(self.headers.get("Host"), self.server.allowed_hosts):
            return self._error(
                HTTPStatus.FORBIDDEN,
                f"Host {str(self.headers.get('Host'))[:80]!r} is not this dashboard (DNS rebinding "
                f"protection): open {self.server.url}",
            )
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        try:
            if path in ("/", "/index.html"):
                self._file(STATIC_DIR / "index.html", "text/html")
            elif path == "/static/plotly.min.js":
                self._file(self.server.plotly_js, "text/javascript")
            elif path.startswith("/static/") and path[len("/static/") :] in _STATIC_FILES:
                name = path[len("/static/") :]
                self._file(STATIC_DIR / name, _STATIC_FILES[name])
            elif path == "/api/runs":
                self.server.refresh()
                self._json(self.server.store.runs_json())
            elif path.startswith("/api/run/"):
                self._run_api(path[len("/api/run/") :], query)
            elif path == "/api/groups":
                x = query.get("x", ["env_steps"])[0]
                ids = [i for i in ",".join(query.get("ids", [""])).split(",") if i]
                try:
                    self._json(self.server.store.groups(x, ids))
                except ValueError as e:
                    self._error(HTTPStatus.BAD_REQUEST, str(e))
            elif path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _run_api(self, rest: str, query: dict) -> None:
        run_id, _, what = rest.rpartition("/")
        store = self.server.store
        if what == "metrics":
            try:
                since = int(query.get("since", ["0"])[0])
            except ValueError:
                return self._error(HTTPStatus.BAD_REQUEST, "since must be an integer")
            data = store.metrics(run_id, since)
            if data is None:
                return self._error(HTTPStatus.NOT_FOUND, f"no run {run_id!r}")
            self._json(data)
        elif what == "config":
            text = store.config_text(run_id)
            if text is None:
                return self._error(HTTPStatus.NOT_FOUND, f"run {run_id!r} has no config.yaml")
            self._send(HTTPStatus.OK, text.encode(), "text/plain; charset=utf-8")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: /api/run/{rest}")

    def _file(self, path: Path, ctype: str) -> None:
        self._send(HTTPStatus.OK, path.read_bytes(), f"{ctype}; charset=utf-8", cache=ctype != "text/html")

    def _json(self, obj) -> None:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server plus the :class:`RunStore` it serves."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: RunStore, quiet: bool = False):
        self.store = store
        self.quiet = quiet
        self.plotly_js = plotly_js_path()
        self._refresh_lock = threading.Lock()
        self.allowed_hosts = allowed_hosts(address[0])
        super().__init__(address, DashboardHandler)

    def refresh(self) -> None:
        """Read new rows and runs; print issues not printed before."""
        with self._refresh_lock:
            issues = self.store.refresh()
        if not self.quiet:
            print_issues(issues)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(
    roots: Sequence[str | Path],
    host: str = "127.0.0.1",
    port: int = 8050,
    smooth: int = RETURN_WINDOW,
    stale_s: float = DEFAULT_STALE_S,
    quiet: bool = False,
) -> DashboardServer:
    """A bound (not yet serving) dashboard server; ``port=0`` picks a free port.

    Raises ``OSError`` if the address is in use.
    """
    store = RunStore(roots, smooth=smooth, stale_s=stale_s)
    server = DashboardServer((host, port), store, quiet=quiet)
    server.refresh()
    return server
