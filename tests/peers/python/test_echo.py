"""Python `websockets` client against `ws-server --mode echo`."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import run

MiB = 1 << 20
SIZES = [0, 125, 126, 65535, 65536, MiB, 16 * MiB]
# 16 MiB is the server's default max message/frame size: exactly 16 MiB must pass.
CLIENT_MAX = 32 * MiB


def ids(sizes):
    return [f"{s // MiB}MiB" if s >= MiB else str(s) for s in sizes]


def client(url: str, **kw):
    kw.setdefault("max_size", CLIENT_MAX)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 10)
    kw.setdefault("ping_interval", None)
    return connect(url, **kw)


async def roundtrip(url: str, message, timeout: float = 60.0):
    async with client(url) as ws:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), timeout)


def text_of(size: int) -> str:
    # ASCII so that len(str) == payload length in bytes; not all one letter.
    pattern = "The quick brown fox jumps over the lazy dog 0123456789. "
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.mark.parametrize("size", SIZES, ids=ids(SIZES))
def test_text_echo(echo, size):
    msg = text_of(size)
    got = run(roundtrip(echo.url, msg), timeout=120)
    assert isinstance(got, str)
    assert len(got) == size
    assert got == msg


@pytest.mark.parametrize("size", SIZES, ids=ids(SIZES))
def test_binary_echo(echo, size):
    msg = os.urandom(size) if size <= MiB else bytes(range(256)) * (size // 256)
    assert len(msg) == size
    got = run(roundtrip(echo.url, msg), timeout=120)
    assert isinstance(got, bytes)
    assert len(got) == size
    assert got == msg


def test_binary_all_byte_values(echo):
    msg = bytes(range(256)) + bytes(reversed(range(256)))
    got = run(roundtrip(echo.url, msg))
    assert got == msg


UNICODE = [
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦",
    "CJK 中文 日本語 한국어",
    "combining e\u0301 a\u0308 n\u0303 Z\u0351\u0300\u0301\u0302",
    "mixed Ünïcödé — “quotes” € \u00a0 \u200b \U0010fffd",
]


@pytest.mark.parametrize("msg", UNICODE, ids=["emoji", "cjk", "combining", "mixed"])
def test_unicode_text(echo, msg):
    got = run(roundtrip(echo.url, msg))
    assert got == msg
    assert got.encode("utf-8") == msg.encode("utf-8")


def test_many_messages_in_order(echo):
    async def body():
        async with client(echo.url) as ws:
            msgs = [f"message {i} ✓" for i in range(200)]
            for m in msgs:
                await ws.send(m)
            got = [await asyncio.wait_for(ws.recv(), 10) for _ in msgs]
            assert got == msgs

    run(body())


def test_fragmented_text(echo):
    async def body():
        async with client(echo.url) as ws:
            frags = ["Hel", "lo, ", "", "wörld ", "😀", "!"]
            await ws.send(frags)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == "".join(frags)

    run(body())


def test_fragmented_binary_async_iterable(echo):
    async def frags():
        for i in range(16):
            yield bytes([i]) * (1000 + i)
            await asyncio.sleep(0)

    async def body():
        async with client(echo.url) as ws:
            await ws.send(frags())
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == b"".join(bytes([i]) * (1000 + i) for i in range(16))
            # the connection is still usable afterwards
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 10) == "after"

    run(body())


def test_fragmented_large(echo):
    """1 MiB message in 64 fragments of 16 KiB."""

    async def body():
        chunk = bytes(range(256)) * 64
        async with client(echo.url) as ws:
            await ws.send([chunk] * 64)
            got = await asyncio.wait_for(ws.recv(), 30)
            assert got == chunk * 64

    run(body())


@pytest.mark.parametrize("payload", [b"", b"ping-payload", bytes(range(125))], ids=["empty", "short", "125"])
def test_ping_pong_payload(echo, payload):
    async def body():
        async with client(echo.url) as ws:
            pong = await ws.ping(payload)
            # resolves only when a pong with exactly this payload arrives
            latency = await asyncio.wait_for(pong, 10)
            assert latency >= 0
            await ws.send("still open")
            assert await asyncio.wait_for(ws.recv(), 10) == "still open"

    run(body())


def test_ping_between_fragments_of_message(echo):
    """A ping interleaved with data messages is answered and does not disturb the data."""

    async def body():
        async with client(echo.url) as ws:
            await ws.send("a" * 1000)
            pong = await ws.ping(b"\x00\xffmid")
            await ws.send(b"b" * 1000)
            await asyncio.wait_for(pong, 10)
            assert await asyncio.wait_for(ws.recv(), 10) == "a" * 1000
            assert await asyncio.wait_for(ws.recv(), 10) == b"b" * 1000

    run(body())


@pytest.mark.parametrize(
    "code,reason",
    [(1000, "bye"), (1000, ""), (4000, "ünïcödé 👋 closing"), (4999, "x" * 123)],
    ids=["1000", "1000-empty", "4000-unicode", "4999-max-reason"],
)
def test_close_code_echo(echo, code, reason):
    async def body():
        ws = await client(echo.url)
        await ws.send("before close")
        assert await asyncio.wait_for(ws.recv(), 10) == "before close"
        await asyncio.wait_for(ws.close(code, reason), 15)
        # The server must echo the close code (RFC 6455 5.5.1).
        assert ws.close_code == code, (ws.close_code, ws.close_reason)
        with pytest.raises(ConnectionClosed) as exc:
            await ws.recv()
        assert exc.value.rcvd is not None and exc.value.rcvd.code == code
        assert exc.value.sent is not None and exc.value.sent.code == code

    run(body())


def test_compression_and_subprotocol_offer(echo):
    """permessage-deflate (websockets' default) and subprotocols offered: still connects and echoes."""

    async def body():
        async with connect(
            echo.url + "/some/path?x=1",
            subprotocols=["chat", "superchat"],
            max_size=CLIENT_MAX,
            open_timeout=10,
            ping_interval=None,
        ) as ws:
            assert ws.subprotocol in (None, "chat", "superchat")
            exts = ws.response.headers.get("Sec-WebSocket-Extensions")
            # the server has no permessage-deflate: it must not accept it
            assert exts is None or "permessage-deflate" not in exts, exts
            for msg in ["compress me " * 100, b"\x00" * 5000, "ok"]:
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), 10) == msg

    run(body())


def test_concurrent_clients(echo):
    async def one(i):
        async with client(echo.url) as ws:
            for j in range(20):
                msg = f"client {i} msg {j}" if j % 2 else f"{i}:{j}".encode() * 100
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), 10) == msg

    async def body():
        await asyncio.gather(*(one(i) for i in range(20)))

    run(body())
