//! A fault-injecting TCP proxy between a client and a server under test:
//! it forwards both ways until told to stall (bytes are swallowed both
//! ways, the sockets stay open: a peer gone silent), throttle what the
//! server sends to the client, reset every connection (RST both ways,
//! mid-frame if a frame is in flight), or half-close toward the server.
//! It notes when the server ended its side of each link.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often a pump looks at the controls while its socket is quiet.
const TICK: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Controls {
    stalled: AtomicBool,
    /// Bytes per second from the server to the client; 0: unlimited.
    down_rate: AtomicU64,
    /// Every link's two sockets (client side, server side).
    links: Mutex<Vec<(TcpStream, TcpStream)>>,
    /// When the server ended its side of a link (EOF or error).
    upstream_ended: Mutex<Vec<Instant>>,
    stop: AtomicBool,
}

/// The proxy; stops accepting when dropped (links already made end with
/// their sockets).
pub struct FaultProxy {
    addr: SocketAddr,
    ctl: Arc<Controls>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 forwarding every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let ctl = Arc::new(Controls::default());
        let c = ctl.clone();
        thread::spawn(move || {
            while !c.stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        thread::sleep(TICK);
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                c.links.lock().unwrap().push((c2, s2));
                let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let up = c.clone();
                thread::spawn(move || pump(client, server, &up, false));
                let down = c.clone();
                thread::spawn(move || pump(s3, c3, &down, true));
            }
        });
        FaultProxy { addr, ctl }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing passes either way (what arrives is swallowed),
    /// and the sockets stay open: to each side, the other went silent.
    pub fn stall(&self) {
        self.ctl.stalled.store(true, Ordering::SeqCst);
    }

    /// The server's bytes reach the client at `bytes_per_sec` at most.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.ctl.down_rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Resets every link both ways (RST, whatever is in flight).
    pub fn reset(&self) {
        for (client, server) in self.ctl.links.lock().unwrap().drain(..) {
            abort(&client);
            abort(&server);
        }
    }

    /// Ends the write side toward the server on every link (the server
    /// reads its end; the client's side stays open).
    pub fn half_close_upstream(&self) {
        for (_, server) in self.ctl.links.lock().unwrap().iter() {
            let _ = server.shutdown(Shutdown::Write);
        }
    }

    /// When the server ended its side of each link so far.
    pub fn upstream_ended(&self) -> Vec<Instant> {
        self.ctl.upstream_ended.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        for (client, server) in self.ctl.links.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

/// Closes `s` with a reset: SO_LINGER with a zero timeout, then shutdown
/// (the descriptor itself closes when its last clone drops).
pub fn abort(s: &TcpStream) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket descriptor and a `linger` of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// Moves bytes from `from` to `to` under the controls; `down` is the
/// server-to-client direction (throttled, and where the server's end is
/// noted).
fn pump(mut from: TcpStream, mut to: TcpStream, ctl: &Controls, down: bool) {
    let _ = from.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let rate = if down {
            ctl.down_rate.load(Ordering::SeqCst)
        } else {
            0
        };
        // A throttled pump reads a tick's worth at a time.
        let want = if rate == 0 {
            buf.len()
        } else {
            ((rate * TICK.as_millis() as u64 / 1000).max(1) as usize).min(buf.len())
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if ctl.stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(_) => break,
        };
        if ctl.stalled.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if rate != 0 {
            thread::sleep(TICK);
        }
    }
    if down {
        ctl.upstream_ended.lock().unwrap().push(Instant::now());
    }
    if !ctl.stalled.load(Ordering::SeqCst) {
        // Pass the end on (the other direction keeps going: a half-close).
        let _ = to.shutdown(Shutdown::Write);
    }
}
