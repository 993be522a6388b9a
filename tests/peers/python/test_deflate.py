"""permessage-deflate (RFC 7692) against Python `websockets`, which compresses by
default: its client against `ws-server --deflate`, and `ws-client --deflate`
against its server, on every runtime."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

from conftest import ServerProc, binary, run

MiB = 1 << 20


@pytest.fixture(scope="module")
def deflate_echo(runtime):
    srv = ServerProc(runtime, "echo", extra=["--deflate"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deflate_chat(runtime):
    srv = ServerProc(runtime, "chat", extra=["--deflate"])
    yield srv
    srv.stop()


def deflate_of(ws) -> PerMessageDeflate | None:
    found = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
    return found[0] if found else None


def chat_json(i: int) -> str:
    return '{"type":"chat","room":"lobby","user":"alice","seq":%d,"text":"%s"}' % (
        i,
        "hello everyone " * (i % 20),
    )


# Offers that exercise every parameter: window limits both ways (including 8,
# which our server must accept and then send uncompressed) and no context
# takeover both ways.
OFFERS = {
    "default": None,
    "no-context-takeover": ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True
    ),
    "windows-9-10": ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=9),
    "server-window-8": ClientPerMessageDeflateFactory(server_max_window_bits=8),
}


@pytest.mark.parametrize("offer", list(OFFERS), ids=list(OFFERS))
def test_python_client_echo_compressed(deflate_echo, offer):
    async def body():
        kw = {"compression": "deflate"} if OFFERS[offer] is None else {"extensions": [OFFERS[offer]], "compression": None}
        async with connect(deflate_echo.url, max_size=32 * MiB, ping_interval=None, open_timeout=10, **kw) as ws:
            ext = deflate_of(ws)
            assert ext is not None, "server declined permessage-deflate"
            msgs = [chat_json(i) for i in range(50)]
            msgs += ["", "x", "é" * 70000, os.urandom(5000), bytes(MiB), "The quick brown fox " * 50000]
            for m in msgs:
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), 30) == m
        deflate_echo.assert_alive()

    run(body(), timeout=120)


def test_python_client_without_compression_still_served(deflate_echo):
    async def body():
        async with connect(deflate_echo.url, compression=None, ping_interval=None) as ws:
            assert deflate_of(ws) is None
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(body())


def test_chat_broadcast_to_compressing_python_clients(deflate_chat):
    async def body():
        url = deflate_chat.url + "/ws"
        async with connect(url, compression="deflate", ping_interval=None) as a, connect(
            url, compression="deflate", ping_interval=None
        ) as b, connect(url, compression=None, ping_interval=None) as c:
            ext = deflate_of(a)
            assert ext is not None
            # The chat asks for server_no_context_takeover (shared broadcasts).
            assert ext.remote_no_context_takeover
            await asyncio.sleep(0.2)
            for i in range(20):
                await c.send(chat_json(i))
            for ws in (a, b, c):
                for i in range(20):
                    assert await asyncio.wait_for(ws.recv(), 10) == chat_json(i)

    run(body(), timeout=60)


def test_ws_client_deflate_against_python_server(runtime):
    """`ws-client --deflate` against a websockets server (compression on by
    default): the extension is negotiated and lines echo back."""

    async def body():
        negotiated = []

        async def handler(ws):
            negotiated.append(deflate_of(ws))
            async for msg in ws:
                await ws.send(msg)

        async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                str(binary("ws-client")),
                f"ws://127.0.0.1:{port}/",
                "--runtime",
                runtime,
                "--deflate",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            lines = [chat_json(i) for i in range(10)]
            try:
                for line in lines:
                    proc.stdin.write((line + "\n").encode())
                    await proc.stdin.drain()
                    got = await asyncio.wait_for(proc.stdout.readline(), 10)
                    assert got.decode().rstrip("\n") == line
                proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 15)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            err = (await proc.stderr.read()).decode("utf-8", "replace")
            assert proc.returncode == 0, err
            assert negotiated and negotiated[0] is not None, "deflate not negotiated"

    run(body(), timeout=60)
