"""Python `websockets` clients against `ws-server --mode chat` (broadcast on /ws, HTML on /)."""

from __future__ import annotations

import asyncio
import http.client

from websockets.asyncio.client import connect

from conftest import run


def client(url: str):
    return connect(url, compression=None, open_timeout=10, close_timeout=5, ping_interval=None)


async def recv(ws, timeout: float = 10.0):
    return await asyncio.wait_for(ws.recv(), timeout)


async def sync(clients, sender=None, rounds: int = 50):
    """Make sure every client is registered for broadcasts.

    A client's handshake can complete before the server has added it to the
    broadcast set. `sender` sends numbered probes until one reaches every
    client (bounded: `rounds` probes, 0.2 s apart), then each client drains up
    to and including that probe (per-sender order is preserved).
    """
    sender = sender or clients[0]
    seen = [None] * len(clients)
    for k in range(rounds):
        probe = f"__sync__{k}"
        await sender.send(probe)
        for i, c in enumerate(clients):
            try:
                while seen[i] != probe:
                    m = await asyncio.wait_for(c.recv(), 0.2 if k < rounds - 1 else 5)
                    assert isinstance(m, str) and m.startswith("__sync__"), f"unexpected message {m!r}"
                    seen[i] = m
            except asyncio.TimeoutError:
                pass
        if all(s == probe for s in seen):
            return
    raise AssertionError(f"broadcast never reached all clients: {seen}")


def test_broadcast_reaches_all(chat_server):
    async def body():
        url = chat_server.url + "/ws"
        async with client(url) as a, client(url) as b, client(url) as c:
            await sync([a, b, c])
            for sender, msg in [(a, "hello from A"), (b, "B says hi 👋"), (c, "中文 from C")]:
                await sender.send(msg)
                for ws in (a, b, c):
                    assert await recv(ws) == msg
            msgs = [f"burst {i}" for i in range(50)]
            for m in msgs:
                await a.send(m)
            for ws in (a, b, c):
                assert [await recv(ws) for _ in msgs] == msgs

    run(body())


def test_aborted_client_is_removed(chat_server):
    async def body():
        url = chat_server.url + "/ws"
        async with client(url) as a, client(url) as b:
            c = await client(url)
            await sync([a, b, c])
            # abrupt disconnect: TCP close without a close frame
            c.transport.abort()
            await asyncio.sleep(0.2)
            for i in range(20):
                msg = f"after abort {i}"
                await a.send(msg)
                assert await recv(a) == msg
                assert await recv(b) == msg
            # a newcomer still joins and receives broadcasts
            async with client(url) as d:
                await sync([a, b, d], sender=b)
                await d.send("newcomer")
                for ws in (a, b, d):
                    assert await recv(ws) == "newcomer"
        chat_server.assert_alive()

    run(body())


def test_client_closing_normally_others_continue(chat_server):
    async def body():
        url = chat_server.url + "/ws"
        async with client(url) as a, client(url) as b:
            c = await client(url)
            await sync([a, b, c])
            await asyncio.wait_for(c.close(1000, "leaving"), 10)
            assert c.close_code == 1000
            await b.send("still here")
            assert await recv(a) == "still here"
            assert await recv(b) == "still here"

    run(body())


def http_get(server, path: str, method: str = "GET"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_index_page(chat_server):
    status, headers, body = http_get(chat_server, "/")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/html"), headers
    text = body.decode("utf-8")
    for elem_id in ("messages", "status", "input", "send"):
        assert f'id="{elem_id}"' in text, f"missing id={elem_id}"


def test_unknown_path_404(chat_server):
    for path in ("/nope", "/ws/extra", "/index.html.bak"):
        status, _, _ = http_get(chat_server, path)
        assert status == 404, (path, status)
    # and the server still serves afterwards
    assert http_get(chat_server, "/")[0] == 200
