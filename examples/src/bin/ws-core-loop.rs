//! ws-core embedded in a hand-written event loop, with no runtime at all.
//!
//! A single-threaded echo server over non-blocking `std::net` sockets: every
//! pass of the loop accepts new connections, reads whatever each socket has
//! into ws-core, writes whatever ws-core wants to send, and fires timers from
//! the one clock the program owns. This is the shape to copy when embedding
//! WebSockets in an existing loop (a game tick, an epoll reactor, an
//! embedded main loop). A real reactor would wait on readiness instead of
//! sleeping when idle; the protocol code would be the same.
//!
//! ```text
//! cargo run --release --bin ws-core-loop -- --addr 127.0.0.1:9002 [--deflate]
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ws_core::handshake::ServerHandshake;
use ws_core::server::demo::Echo;
use ws_core::server::site::{Route, route_with_config};
use ws_core::{Bytes, Config, Connection, DeflateConfig, Message, Role};

/// Where one connection is in its life.
enum Phase {
    /// Reading the HTTP request head.
    Handshake(ServerHandshake),
    /// Writing an HTTP response; then either speak WebSocket or hang up.
    Respond {
        bytes: Bytes,
        written: usize,
        then: Option<Connection>,
    },
    /// Speaking WebSocket.
    Open(Connection),
    /// Done; drop the socket.
    Done,
}

struct Client {
    stream: TcpStream,
    /// The client's address, for the handler deciding the upgrade.
    peer: SocketAddr,
    phase: Phase,
    /// Every connection's configuration (its permessage-deflate policy).
    config: Config,
}

/// Writes as much of `bytes` as the socket takes; returns bytes written.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    match stream.write(bytes) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

impl Client {
    /// Makes whatever progress is possible without blocking; returns whether
    /// anything happened.
    fn step(&mut self, now: Instant) -> io::Result<bool> {
        let mut progressed = false;
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        self.phase = match phase {
            Phase::Handshake(mut hs) => {
                let buf = hs.read_buf();
                let start = buf.len();
                buf.resize(start + 4096, 0);
                let read = self.stream.read(&mut buf[start..]);
                let n = match read {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        buf.truncate(start);
                        self.phase = Phase::Handshake(hs);
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                buf.truncate(start + n);
                progressed = true;
                if n == 0 {
                    Phase::Done
                } else {
                    match hs.poll_request() {
                        Ok(None) => Phase::Handshake(hs),
                        Ok(Some(req)) => {
                            match route_with_config(&req, &Echo, self.peer, &self.config) {
                                Route::Upgrade {
                                    response, deflate, ..
                                } => {
                                    let conn = Connection::with_buffered(
                                        Role::Server,
                                        self.config.clone().negotiated_deflate(deflate),
                                        hs.take_remaining(),
                                    );
                                    Phase::Respond {
                                        bytes: response,
                                        written: 0,
                                        then: Some(conn),
                                    }
                                }
                                Route::Respond { response } => Phase::Respond {
                                    bytes: response,
                                    written: 0,
                                    then: None,
                                },
                            }
                        }
                        Err(e) => Phase::Respond {
                            bytes: e.response(),
                            written: 0,
                            then: None,
                        },
                    }
                }
            }
            Phase::Respond {
                bytes,
                mut written,
                then,
            } => {
                let n = write_some(&mut self.stream, &bytes[written..])?;
                written += n;
                progressed = n > 0;
                if written < bytes.len() {
                    Phase::Respond {
                        bytes,
                        written,
                        then,
                    }
                } else {
                    match then {
                        Some(conn) => Phase::Open(conn),
                        None => Phase::Done,
                    }
                }
            }
            Phase::Open(mut conn) => {
                progressed |= self.drive(&mut conn, now)?;
                if conn.should_close_transport() {
                    Phase::Done
                } else {
                    Phase::Open(conn)
                }
            }
            Phase::Done => Phase::Done,
        };
        Ok(progressed)
    }

    /// One pass over an open WebSocket: read, decode and echo, write, timers.
    fn drive(&mut self, conn: &mut Connection, now: Instant) -> io::Result<bool> {
        let mut progressed = false;
        // Read straight into the connection's buffer, unless the peer is not
        // reading its echoes: then let TCP push back instead of buffering.
        if conn.buffered_transmit() < conn.config().get_write_buffer_limit() {
            progressed |= Self::read_into(&mut self.stream, conn)?;
        }
        loop {
            match conn.poll_message() {
                Ok(Some(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    let _ = conn.send(&msg);
                }
                Ok(Some(_)) => {} // pings and closes are answered by ws-core
                Ok(None) => break,
                Err(e) => {
                    eprintln!("connection error: {e}");
                    break;
                }
            }
        }
        // Write whatever ws-core queued: echoes, pongs, close frames.
        while conn.wants_write() {
            let n = write_some(&mut self.stream, conn.pending_transmit())?;
            if n == 0 {
                break;
            }
            conn.advance_transmit(n);
            progressed = true;
        }
        // Timers: the loop owns the clock and hands it in.
        if conn.poll_timeout(now).is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        Ok(progressed)
    }

    /// One non-blocking read into the connection; returns whether bytes (or
    /// the end of stream) arrived.
    fn read_into(stream: &mut TcpStream, conn: &mut Connection) -> io::Result<bool> {
        let buf = conn.read_buf();
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let result = stream.read(&mut buf[start..]);
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(false)
                } else {
                    Err(e)
                };
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            conn.handle_eof();
        }
        Ok(true)
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9002".to_string();
    let mut config = Config::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            // permessage-deflate for clients that offer it.
            "--deflate" => config = config.deflate(DeflateConfig::enabled()),
            "-h" | "--help" => {
                println!("usage: ws-core-loop [--addr 127.0.0.1:9002] [--deflate]");
                return Ok(());
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    println!(
        "ws-core-loop echo server on ws://{}",
        listener.local_addr()?
    );
    let mut clients: Vec<Client> = Vec::new();
    loop {
        let mut progressed = false;
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    clients.push(Client {
                        stream,
                        peer,
                        phase: Phase::Handshake(ServerHandshake::new()),
                        config: config.clone(),
                    });
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        for c in &mut clients {
            match c.step(now) {
                Ok(p) => progressed |= p,
                Err(_) => c.phase = Phase::Done,
            }
        }
        clients.retain(|c| !matches!(c.phase, Phase::Done));
        if !progressed {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
