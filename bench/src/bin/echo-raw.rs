//! The physical limit for "the same framing": raw TCP with a minimal
//! hand-written frame parser. Handshake, then for every read: parse headers,
//! unmask, re-frame unmasked into one output buffer, one write per read.
//! No UTF-8 validation, no limits, no fragmentation handling beyond
//! echoing frames as they come; pings get pongs and a close gets a close.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_bench::{accept_key, head_end, op, parse_header, put_header, serve_echo, xor_mask};

const READ: usize = 64 * 1024;

async fn serve(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ);
    // Handshake: read the head, find the key, answer 101.
    let head_len = loop {
        if let Some(n) = head_end(&buf) {
            break n;
        }
        if buf.len() > 16 * 1024 || s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = std::str::from_utf8(&buf[..head_len]).unwrap_or("");
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    s.write_all(resp.as_bytes()).await?;
    buf.drain(..head_len);

    let mut out: Vec<u8> = Vec::with_capacity(READ);
    loop {
        // Frame everything complete in `buf`.
        let mut pos = 0;
        let mut closing = false;
        while let Some(h) = parse_header(&buf[pos..]) {
            let end = pos + h.header_len + h.len;
            if end > buf.len() {
                break;
            }
            let body = &mut buf[pos + h.header_len..end];
            if let Some(k) = h.mask {
                xor_mask(body, k);
            }
            let reply = match h.opcode {
                op::PING => Some(op::PONG),
                op::PONG => None,
                op::CLOSE => {
                    closing = true;
                    Some(op::CLOSE)
                }
                o => Some(o),
            };
            if let Some(o) = reply {
                let b0 = if h.fin { 0x80 } else { 0 };
                let start = out.len();
                put_header(&mut out, o, h.len, None);
                out[start] = b0 | o;
                out.extend_from_slice(body);
            }
            pos = end;
            if closing {
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if closing {
            return Ok(());
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > 4 * READ {
            buf = Vec::with_capacity(READ);
        }
        if out.capacity() > 4 * READ {
            out = Vec::new();
        }
        if buf.capacity() - buf.len() < READ / 2 {
            buf.reserve(READ);
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

fn main() {
    serve_echo("echo-raw", |stream| async move {
        let _ = serve(stream).await;
    });
}
