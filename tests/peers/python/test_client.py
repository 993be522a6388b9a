"""`ws-client` (our interactive client) against a Python `websockets` echo server."""

from __future__ import annotations

import asyncio

import pytest

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from conftest import binary, run

LINES = ["hello", "ünïcödé 😀 中文 e\u0301", "third line, the last one"]


class EchoServer:
    def __init__(self):
        self.close_codes: list[int | None] = []
        self.received: list[str | bytes] = []
        self.done = asyncio.Event()

    async def handler(self, ws):
        # Keep receiving after a failed send: once the client's close has been
        # processed, sends fail, but the messages that preceded the close are
        # still delivered and must all have arrived.
        try:
            async for msg in ws:
                self.received.append(msg)
                try:
                    await ws.send(msg)
                except ConnectionClosed:
                    pass
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)
        self.done.set()


async def start_client(port: int, runtime: str):
    return await asyncio.create_subprocess_exec(
        str(binary("ws-client")),
        f"ws://127.0.0.1:{port}/",
        "--runtime",
        runtime,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc, timeout: float = 15.0, what: str = "after stdin EOF"):
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"ws-client did not exit within {timeout}s {what}")


def test_ws_client_burst(runtime):
    """Write three lines and close stdin at once: all three echoes are printed in order,
    the client closes with 1000 and exits 0."""

    async def body():
        srv = EchoServer()
        async with serve(srv.handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await start_client(port, runtime)
            stdout, stderr = await asyncio.wait_for(
                proc.communicate(("\n".join(LINES) + "\n").encode("utf-8")), 20
            )
            out = stdout.decode("utf-8").splitlines()
            err = stderr.decode("utf-8", "replace")
            assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {out}\nstderr: {err}"
            # The client closes as soon as stdin ends. websockets stops sending
            # data once it has processed that close (RFC 6455 5.5.1: no data after
            # a close), so echoes it had not sent yet are legitimately never sent;
            # whatever did arrive must be printed, in order.
            assert out == LINES[: len(out)], f"stdout: {out}\nstderr: {err}"
            await asyncio.wait_for(srv.done.wait(), 10)
            assert srv.received == LINES
            assert srv.close_codes == [1000]

    run(body(), timeout=60)


def test_ws_client_interactive(runtime):
    """Line by line: each echo is printed before the next line is written."""

    async def body():
        srv = EchoServer()
        async with serve(srv.handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await start_client(port, runtime)
            try:
                for line in LINES:
                    proc.stdin.write((line + "\n").encode("utf-8"))
                    await proc.stdin.drain()
                    got = await asyncio.wait_for(proc.stdout.readline(), 10)
                    assert got.decode("utf-8").rstrip("\n") == line
                proc.stdin.close()
                rest = await asyncio.wait_for(proc.stdout.read(), 15)
                assert rest == b"", rest
                await finish(proc)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            err = (await proc.stderr.read()).decode("utf-8", "replace")
            assert proc.returncode == 0, f"exit {proc.returncode}\nstderr: {err}"
            await asyncio.wait_for(srv.done.wait(), 10)
            assert srv.received == LINES
            assert srv.close_codes == [1000]

    run(body(), timeout=60)


@pytest.mark.strict
def test_ws_client_server_closes_first(runtime):
    """The server closes (1001) while the client is idle: the client must answer the
    close handshake (server sees a clean close) and exit on its own, with stdin still open."""

    async def body():
        got_close = asyncio.get_running_loop().create_future()

        async def handler(ws):
            msg = await ws.recv()
            await ws.send(msg)
            await ws.close(1001, "going away")
            got_close.set_result((ws.close_code, ws.close_reason))

        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await start_client(port, runtime)
            try:
                proc.stdin.write(b"one\n")
                await proc.stdin.drain()
                assert (await asyncio.wait_for(proc.stdout.readline(), 10)) == b"one\n"
                # the client echoes our close code back
                code, _ = await asyncio.wait_for(got_close, 10)
                assert code == 1001
                await finish(proc, what="after the server closed the connection")
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    run(body(), timeout=60)
