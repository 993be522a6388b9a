"""Python `websockets` and our binaries over TLS (wss://, https://), on every runtime.

Certificates come from tests/peers/make-test-ca.sh, made fresh per run: a test CA
that the Python `ssl` contexts and `ws-client --ca` trust, a server leaf for
localhost and 127.0.0.1, a leaf for another name and a second CA.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from conftest import ServerProc, binary, run


@pytest.fixture(scope="module")
def wss_echo(runtime, test_ca):
    srv = ServerProc(runtime, "echo", tls=test_ca)
    yield srv
    srv.stop()


@pytest.fixture
def wss_chat(runtime, test_ca):
    srv = ServerProc(runtime, "chat", tls=test_ca)
    yield srv
    try:
        srv.assert_alive()
    finally:
        srv.stop()


def client(url: str, ctx: ssl.SSLContext):
    return connect(url, ssl=ctx, compression=None, open_timeout=10, close_timeout=5, ping_interval=None)


def test_python_client_echo_over_wss(wss_echo, test_ca):
    """Text, binary and a 1 MiB message round trip over wss://, then a clean 1000 close
    (the server's close_notify follows, so the Python side sees no TLS error)."""

    async def body():
        async with client(wss_echo.url + "/", test_ca.client_context()) as ws:
            await ws.send("hello över TLS 😀")
            assert await asyncio.wait_for(ws.recv(), 10) == "hello över TLS 😀"
            await ws.send(b"\x00\x01\xff")
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x00\x01\xff"
            big = bytes(range(256)) * 4096
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 20) == big
        assert ws.close_code == 1000

    run(body())
    wss_echo.assert_alive()


def test_python_client_by_name_and_refusing_an_untrusted_server(wss_echo, test_ca):
    """The leaf verifies by name (localhost) against the test CA; a client trusting
    another CA refuses the server, and the server keeps serving afterwards."""

    async def body():
        async with client(f"wss://localhost:{wss_echo.port}/", test_ca.client_context()) as ws:
            await ws.send("by name")
            assert await asyncio.wait_for(ws.recv(), 10) == "by name"
        with pytest.raises(ssl.SSLCertVerificationError):
            async with client(wss_echo.url + "/", test_ca.client_context(test_ca.other_ca)):
                pass
        async with client(wss_echo.url + "/", test_ca.client_context()) as ws:
            await ws.send("still serving")
            assert await asyncio.wait_for(ws.recv(), 10) == "still serving"

    run(body())
    wss_echo.assert_alive()


def test_chat_page_over_https_and_broadcast_over_wss(wss_chat, test_ca):
    """The test page loads over https:// and three wss:// clients hear each other."""
    ctx = test_ca.client_context()
    with urllib.request.urlopen(wss_chat.http + "/", context=ctx, timeout=10) as resp:
        assert resp.status == 200
        page = resp.read().decode("utf-8")
    assert "WebSocket" in page and "<html" in page.lower()

    async def body():
        url = wss_chat.url + "/ws"
        async with client(url, ctx) as a, client(url, ctx) as b, client(url, ctx) as c:
            # Registration races the handshake: probe until everyone hears a.
            for k in range(50):
                await a.send(f"probe {k}")
                try:
                    for ws in (a, b, c):
                        while (await asyncio.wait_for(ws.recv(), 0.5)) != f"probe {k}":
                            pass
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                raise AssertionError("broadcast never reached every client")
            for sender, msg in [(a, "from A"), (b, "from B ✓"), (c, "from C")]:
                await sender.send(msg)
                for ws in (a, b, c):
                    assert await asyncio.wait_for(ws.recv(), 10) == msg

    run(body())


class TlsEcho:
    """A Python `websockets` echo server over TLS; records close codes."""

    def __init__(self):
        self.close_codes: list[int | None] = []

    async def handler(self, ws):
        try:
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)


async def ws_client(runtime: str, url: str, *args: str, lines: list[str], timeout: float = 20):
    proc = await asyncio.create_subprocess_exec(
        str(binary("ws-client")),
        url,
        "--runtime",
        runtime,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def feed():
        # One line at a time, each echo awaited by the server side's timing,
        # then EOF: the client closes with 1000 and exits.
        # A client that refused the server has exited already: its stdin is gone.
        try:
            for line in lines:
                proc.stdin.write((line + "\n").encode("utf-8"))
                await proc.stdin.drain()
                await asyncio.sleep(0.2)
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass

    feeder = asyncio.create_task(feed())
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    await feeder
    return proc.returncode, stdout.decode("utf-8"), stderr.decode("utf-8", "replace")


def test_ws_client_against_python_wss_server(runtime, test_ca):
    """`ws-client --ca` verifies the Python server's leaf against the test CA by IP and
    by name, echoes every line and closes with 1000."""

    async def body():
        srv = TlsEcho()
        async with serve(
            srv.handler, "127.0.0.1", 0, ssl=test_ca.server_context(), compression=None, ping_interval=None
        ) as server:
            port = server.sockets[0].getsockname()[1]
            for host in ("127.0.0.1", "localhost"):
                lines = [f"over TLS to {host}", "ünïcödé 中文"]
                rc, out, err = await ws_client(
                    runtime, f"wss://{host}:{port}/", "--ca", str(test_ca.ca), lines=lines
                )
                assert rc == 0, f"exit {rc}\nstdout: {out}\nstderr: {err}"
                assert out.splitlines() == lines, f"stdout: {out}\nstderr: {err}"
            await asyncio.sleep(0.2)
            assert srv.close_codes == [1000, 1000]

    run(body())


def test_ws_client_refuses_another_ca_and_a_wrong_name(runtime, test_ca):
    """Without the right root, or with a leaf for another name, ws-client refuses the
    server with distinct, clear errors and a non-zero exit; nothing is sent."""

    async def body():
        srv = TlsEcho()
        async with serve(
            srv.handler, "127.0.0.1", 0, ssl=test_ca.server_context(), compression=None, ping_interval=None
        ) as good, serve(
            srv.handler,
            "127.0.0.1",
            0,
            ssl=test_ca.server_context(wrong_name=True),
            compression=None,
            ping_interval=None,
        ) as wrong:
            port = good.sockets[0].getsockname()[1]
            rc, out, err = await ws_client(
                runtime, f"wss://127.0.0.1:{port}/", "--ca", str(test_ca.other_ca), lines=["x"]
            )
            assert rc != 0 and out == "", f"exit {rc}\nstdout: {out}\nstderr: {err}"
            assert "certificate" in err.lower(), err
            unknown_issuer = err

            port = wrong.sockets[0].getsockname()[1]
            rc, out, err = await ws_client(
                runtime, f"wss://localhost:{port}/", "--ca", str(test_ca.ca), lines=["x"]
            )
            assert rc != 0 and out == "", f"exit {rc}\nstdout: {out}\nstderr: {err}"
            assert "name" in err.lower(), err
            assert err != unknown_issuer
            assert srv.close_codes == [], "no WebSocket connection was opened"

    run(body())
