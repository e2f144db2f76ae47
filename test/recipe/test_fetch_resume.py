"""io.fetch against a local HTTP server: an interrupted download resumes (HTTP Range) and is checksum-verified."""
from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from echo_plugin.recipe import io

PAYLOAD = bytes(range(256)) * 400  # 102400 bytes
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    """Serves PAYLOAD at any path, with Range support unless ``ranges`` is False; the first ``cuts``
    answers send half of what they declare and drop the connection. ``requests`` records each Range header."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.ranges = True
        self.cuts = 0
        self.requests: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/corpus.tar.gz"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        wanted = self.headers.get("Range")
        self.server.requests.append(wanted)
        first = int(wanted[len("bytes="):-1]) if wanted and self.server.ranges else 0
        if first >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.end_headers()
            return
        body = PAYLOAD[first:]
        self.send_response(206 if first else 200)
        if first:
            self.send_header("Content-Range", f"bytes {first}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cuts > 0:
            self.server.cuts -= 1
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_dropped_connection_resumes_from_where_it_stopped(server: Server, tmp_path: Path) -> None:
    server.cuts = 2  # the first two answers break off halfway
    dest = io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "corpus.tar.gz.part").exists()
    half, three_quarters = len(PAYLOAD) // 2, len(PAYLOAD) // 2 + len(PAYLOAD) // 4
    assert server.requests == [None, f"bytes={half}-", f"bytes={three_quarters}-"]


def test_a_stopped_run_leaves_the_part_and_the_next_run_fetches_only_the_rest(server: Server, tmp_path: Path) -> None:
    server.cuts = 1
    with pytest.raises(Exception, match="IncompleteRead|incomplete|Connection"):
        io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256, retries=0)
    part = tmp_path / "corpus.tar.gz.part"
    assert part.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    assert io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256).read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_a_server_without_ranges_sends_it_whole_again(server: Server, tmp_path: Path) -> None:
    server.ranges = False
    (tmp_path / "corpus.tar.gz.part").write_bytes(PAYLOAD[:1000])
    assert io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256).read_bytes() == PAYLOAD
    assert server.requests == ["bytes=1000-"]


def test_a_complete_part_is_checked_not_fetched_again(server: Server, tmp_path: Path) -> None:
    (tmp_path / "corpus.tar.gz.part").write_bytes(PAYLOAD)  # the run stopped before the rename
    assert io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]  # answered 416 with the same total


def test_a_resumed_download_that_fails_its_checksum_is_deleted(server: Server, tmp_path: Path) -> None:
    part = tmp_path / "corpus.tar.gz.part"
    part.write_bytes(b"\xff" * 5000)  # a part from some other file
    with pytest.raises(ValueError, match="SHA256 .* differs from the published .*: corrupt or truncated"):
        io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256)
    assert not part.exists() and not (tmp_path / "corpus.tar.gz").exists()
    assert io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256).read_bytes() == PAYLOAD  # the next try starts over


def test_an_http_error_is_not_retried(server: Server, tmp_path: Path) -> None:
    part = tmp_path / "corpus.tar.gz.part"
    part.write_bytes(PAYLOAD + b"extra")  # longer than the file: 416 with another total
    with pytest.raises(io.urllib.error.HTTPError, match="416"):
        io.fetch(server.url, tmp_path / "corpus.tar.gz", SHA256)
    assert not part.exists() and len(server.requests) == 1
