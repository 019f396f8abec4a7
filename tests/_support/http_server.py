"""A threaded HTTP server on 127.0.0.1 that serves in-memory assets, with faults on demand.

Each asset can: answer with an error status, drop the connection halfway through the
body (the first time only), ignore Range requests, serve a different body than the
real one, omit Content-Length, trickle its body (so a client can be killed mid-download, or
sees a stall), or redirect elsewhere. Every request's path and headers are recorded.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

# Bounds every socket operation of the server, so no test can hang on it.
SOCKET_TIMEOUT = 5.0


@dataclass
class Asset:
    """One served file and the faults to inject while serving it."""

    body: bytes
    status: int = 200
    drop_after: Optional[int] = None  # first response: send this many body bytes, then hang up
    ignore_range: bool = False
    served_body: Optional[bytes] = None  # sent instead of ``body`` (wrong or truncated content)
    send_length: bool = True
    dropped: bool = False
    trickle: Optional[int] = None  # send the body this many bytes at a time, ``trickle_delay`` s apart
    trickle_delay: float = 0.05
    redirect: Optional[str] = None  # answer 302 with this Location


class AssetServer:
    """Owns the server thread; ``add`` an asset, get its URL, inspect ``requests``."""

    def __init__(self) -> None:
        self.assets: Dict[str, Asset] = {}
        self.requests: List[Tuple[str, Dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "AssetServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(SOCKET_TIMEOUT)

    def add(self, path: str, body: bytes, **faults: object) -> str:
        """Serve ``body`` at ``path`` with the given :class:`Asset` faults; return its URL."""
        self.assets[path] = Asset(body, **faults)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def requests_for(self, path: str) -> List[Dict[str, str]]:
        with self._lock:
            return [headers for p, headers in self.requests if p == path]

    def record(self, path: str, headers: Dict[str, str]) -> None:
        with self._lock:
            self.requests.append((path, headers))


def _handler_for(server: AssetServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            return None

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            server.record(self.path, {k.lower(): v for k, v in self.headers.items()})
            asset = server.assets.get(self.path)
            if asset is not None and asset.redirect:
                self._send(302, b"", {"Location": asset.redirect})
                return
            if asset is None or asset.status != 200:
                self._send(asset.status if asset else 404, b"")
                return
            body = asset.body if asset.served_body is None else asset.served_body
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if wanted and not asset.ignore_range:
                start = int(wanted.group(1))
                end = min(int(wanted.group(2) or len(body) - 1), len(body) - 1)
                if start >= len(body):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    return
                self._send(206, body[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(body)}"}, asset)
                return
            self._send(200, body, {}, asset)

        def _send(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None,
                  asset: Optional[Asset] = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if asset is None or asset.send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if asset is not None and asset.drop_after is not None and not asset.dropped:
                asset.dropped = True
                self.wfile.write(body[: asset.drop_after])
                self.connection.shutdown(socket.SHUT_WR)  # the client sees the body end early
                self.close_connection = True
                return
            step = asset.trickle if asset is not None and asset.trickle else len(body) or 1
            for start in range(0, len(body), step):
                if start:
                    time.sleep(asset.trickle_delay if asset is not None else 0)
                try:
                    self.wfile.write(body[start:start + step])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (killed, or stopped a stalled download)

    return Handler


@pytest.fixture
def asset_server() -> Iterator[AssetServer]:
    """A loopback server for one test, stopped when the test ends."""
    with AssetServer() as server:
        yield server
