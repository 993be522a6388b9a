"""Bad opening handshakes over a raw socket; the server must answer with an HTTP
error and keep serving normal clients afterwards."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.asyncio.client import connect

from conftest import run

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def raw_request(port: int, request: bytes, timeout: float = 10.0):
    """Send `request`, read the response head; return (status, headers-dict-lowercase, raw)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"no HTTP response: {data[:300]!r}"
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, data


def request(method="GET", path="/ws", port=0, version="13", key=KEY, upgrade=True, extra=""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_still_echoes(server):
    async def body():
        async with connect(server.url + "/ws", compression=None, open_timeout=10, ping_interval=None) as ws:
            await ws.send("still serving ✓")
            assert await asyncio.wait_for(ws.recv(), 10) == "still serving ✓"

    run(body(), timeout=30)
    server.assert_alive()


def test_good_raw_handshake(echo):
    status, headers, _ = raw_request(echo.port, request(port=echo.port))
    assert status == 101
    assert headers.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in headers.get("connection", "").lower()
    # RFC 6455 1.3 sample: key "dGhlIHNhbXBsZSBub25jZQ==" -> accept below
    assert headers.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert "sec-websocket-extensions" not in headers
    assert_still_echoes(echo)


def test_wrong_version_426(echo):
    status, headers, raw = raw_request(echo.port, request(port=echo.port, version="8"))
    assert status == 426, raw[:300]
    assert headers.get("sec-websocket-version", "").replace(" ", "") == "13", headers
    assert_still_echoes(echo)


@pytest.mark.strict
def test_missing_version_rejected(echo):
    status, _, raw = raw_request(echo.port, request(port=echo.port, version=None))
    assert status in (400, 426), raw[:300]
    assert_still_echoes(echo)


def test_missing_key_400(echo):
    status, _, raw = raw_request(echo.port, request(port=echo.port, key=None))
    assert status == 400, raw[:300]
    assert_still_echoes(echo)


@pytest.mark.strict
@pytest.mark.parametrize("key", ["", "not-base64!!", "c2hvcnQ="], ids=["empty", "not-base64", "short"])
def test_invalid_key_400(echo, key):
    status, _, raw = raw_request(echo.port, request(port=echo.port, key=key))
    assert status == 400, raw[:300]
    assert_still_echoes(echo)


def test_post_rejected(echo):
    status, _, raw = raw_request(
        echo.port, request(method="POST", port=echo.port, extra="Content-Length: 0")
    )
    assert status in (400, 405), raw[:300]
    assert_still_echoes(echo)


def test_plain_get_without_upgrade_426(chat_server):
    status, _, raw = raw_request(
        chat_server.port, request(port=chat_server.port, upgrade=False, key=None, version=None)
    )
    assert status == 426, raw[:300]
    assert_still_echoes_chat(chat_server)


@pytest.mark.strict
def test_garbage_request(echo):
    """Not HTTP at all: the server answers 400 or just closes; either way it keeps serving."""
    with socket.create_connection(("127.0.0.1", echo.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n")
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            data = b""
    if data:
        assert data.startswith(b"HTTP/1.1 4"), data[:200]
    assert_still_echoes(echo)


@pytest.mark.strict
def test_half_open_handshake_does_not_block(echo):
    """A client that sends half a request and stalls must not block other clients."""
    with socket.create_connection(("127.0.0.1", echo.port), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert_still_echoes(echo)


def assert_still_echoes_chat(server):
    async def body():
        async with connect(server.url + "/ws", compression=None, open_timeout=10, ping_interval=None) as ws:
            # alone in the room: the broadcast comes back to the sender
            await ws.send("still serving ✓")
            assert await asyncio.wait_for(ws.recv(), 10) == "still serving ✓"

    run(body(), timeout=30)
    server.assert_alive()
