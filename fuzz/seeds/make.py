#!/usr/bin/env python3
"""Writes the hand-made starting inputs of each fuzz target into
fuzz/corpus/<target>/ (`cargo fuzz cmin` then keeps what adds coverage).
Every input starts with its chunk plan (see ws_core::fuzzing::split_plan)."""
import base64, hashlib, os, random, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

def plan(*sizes):
    return bytes([len(sizes)] + [s - 1 for s in sizes])

def frame(op, payload, fin=True, mask=None, rsv=0):
    b0 = (0x80 if fin else 0) | rsv << 4 | op
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        h += mask
    return h + payload

key = base64.b64encode(b"fuzzing-key-0001").decode()
accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()

req = (f"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
       f"Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://example.com\r\n\r\n").encode()
put("server_handshake", "upgrade", plan(7, 3) + req + b"\x81\x80abcd")
put("server_handshake", "plain-get", b"\x00GET / HTTP/1.0\r\nHost: a\r\n\r\n")
put("server_handshake", "no-key", plan(64) + req.replace(b"Sec-WebSocket-Key", b"X-Key"))

resp = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n").encode()
put("client_handshake", "101", plan(5, 11) + resp + b"\x81\x02hi")
put("client_handshake", "101-noproto", b"\x00" + resp.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""))
put("client_handshake", "bad-accept", plan(100) + resp.replace(accept.encode(), b"x" * len(accept)))
put("client_handshake", "403", b"\x00HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

for i, u in enumerate(["ws://example.com/chat", "wss://[::1]:8443/a?b=c", "ws://user@host:0/",
                       "WS://EXAMPLE.com:80", "wss://a.b/%20x#frag", "ws://127.0.0.1:65535/?"]):
    put("url", f"u{i}", u.encode())

put("proxy_connect", "200", plan(9) + b"HTTP/1.1 200 Connection established\r\n\r\n")
put("proxy_connect", "200-early", b"\x00HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\nHTTP/1.1 101")
put("proxy_connect", "407", plan(3, 50) + b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")

M = b"\x01\x02\x03\x04"
for role, mask in (("frames_server", M), ("frames_client", None)):
    put(role, "text", plan(3, 1, 7) + frame(1, "héllo €".encode(), mask=mask))
    put(role, "fragmented", plan(2) + frame(1, b"ab", fin=False, mask=mask)
        + frame(9, b"ping", mask=mask) + frame(0, "é".encode()[:1], fin=False, mask=mask)
        + frame(0, "é".encode()[1:], mask=mask))
    put(role, "close", b"\x00" + frame(2, b"\x00\x01", mask=mask) + frame(8, b"\x03\xe8bye", mask=mask))
    put(role, "bad-utf8", plan(1) + frame(1, b"\xff\xfe", mask=mask))
    put(role, "too-big", plan(10) + frame(2, b"x" * 1025, mask=mask))
    put(role, "ping-flood", plan(200) + frame(9, b"p" * 125, mask=mask) * 40)
    put(role, "bad-close", b"\x00" + frame(8, b"\x03\xed", mask=mask))

rng = random.Random(18)
for i in range(8):
    put("session", f"r{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(32, 400))))

# permessage-deflate (frames_deflate_*): RSV1 on a message's first frame,
# the raw deflate stream without its 00 00 ff ff tail.
import zlib
def deflated(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]
for role, mask in (("frames_deflate_server", M), ("frames_deflate_client", None)):
    z = deflated("héllo héllo héllo".encode())
    put(role, "compressed", plan(3, 5) + frame(1, z, mask=mask, rsv=4))
    put(role, "compressed-fragmented", plan(2) + frame(2, z[:3], fin=False, mask=mask, rsv=4)
        + frame(9, b"p", mask=mask) + frame(0, z[3:], mask=mask))
    put(role, "plain", b"\x00" + frame(1, b"plain", mask=mask) + frame(8, b"\x03\xe8", mask=mask))
    put(role, "bomb", plan(100) + frame(2, deflated(b"\x00" * 100000), mask=mask, rsv=4))
    put(role, "garbage", plan(1) + frame(2, b"\xff\xff\xff\xff", mask=mask, rsv=4))
