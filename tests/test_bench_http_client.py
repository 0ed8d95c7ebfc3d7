"""The HTTP benchmark's own client reads keep-alive responses as a real client would."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.http import RawClient


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn answers

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self._answer(201, {"path": self.path, "got": body,
                           "auth": self.headers["Authorization"]})

    def do_GET(self) -> None:
        if self.path == "/unframed":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self._answer(404 if self.path == "/missing" else 200, {"path": self.path})

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_requests_on_one_connection_each_get_their_own_response(port: int) -> None:
    client = RawClient(port, "t0k")
    status, data = client.post("/members", {"name": "党员1"})
    assert status == 201
    assert json.loads(data) == {"path": "/members", "got": {"name": "党员1"},
                                "auth": "Bearer t0k"}
    first = client.sock
    assert client.get("/members/a") == (200, b'{"path": "/members/a"}')
    assert client.get("/missing")[0] == 404
    assert client.sock is first  # the same keep-alive connection throughout
    client.close()


def test_a_response_without_a_length_is_an_error_not_a_guess(port: int) -> None:
    client = RawClient(port, "t0k")
    with pytest.raises(http.client.HTTPException, match="no Content-Length"):
        client.get("/unframed")
    client.close()
