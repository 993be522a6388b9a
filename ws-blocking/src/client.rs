//! [`Client`]: a convenience WebSocket client for scripts and the
//! interactive command-line client.
//!
//! It holds the connection as split halves, so [`Client::run_interactive`]
//! can send stdin lines from one thread while printing received messages on
//! another.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ws_core::handshake::Response;
use ws_core::server::session::display_line;
use ws_core::url::WsUrl;
use ws_core::{CloseCode, Config, Error, Message};

use crate::Result;
use crate::handshake::connect_url;
use crate::stream::{Messages, WsReader, WsWriter};

#[derive(Debug)]
enum Conn {
    Idle,
    Open {
        // Boxed: the reader holds the whole receiving state.
        reader: Box<WsReader<TcpStream>>,
        writer: WsWriter<TcpStream>,
    },
    Closed,
}

/// A WebSocket client for one `ws://` URL.
///
/// ```no_run
/// use ws_blocking::Client;
///
/// let mut client = Client::new("ws://127.0.0.1:8080/ws")?;
/// client.connect()?;
/// client.send_message("hello")?;
/// if let Some(msg) = client.recv() {
///     println!("{:?}", msg?);
/// }
/// client.close()?;
/// # Ok::<(), ws_blocking::Error>(())
/// ```
///
/// Sending before [`connect`](Self::connect) (or after the connection
/// ended) fails with [`Error::Closed`]; receiving yields `None` (as on every
/// runtime).
#[derive(Debug)]
pub struct Client {
    url: WsUrl,
    config: Config,
    conn: Conn,
    response: Option<Response>,
}

impl Client {
    /// A client for `url`, not yet connected. Fails on an invalid URL,
    /// including `wss://` (`Error::Url(UrlError::TlsNotSupported)`).
    pub fn new(url: &str) -> Result<Client> {
        Ok(Client {
            url: WsUrl::parse(url)?,
            config: Config::default(),
            conn: Conn::Idle,
            response: None,
        })
    }

    /// Uses `config` for the next [`connect`](Self::connect).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Connects and performs the opening handshake (bounded by the
    /// handshake timeout). Replaces any previous connection (dropping it
    /// without a closing handshake).
    pub fn connect(&mut self) -> Result<()> {
        let (ws, response) = connect_url(&self.url, self.config.clone())?;
        let (reader, writer) = ws.split();
        self.conn = Conn::Open {
            reader: Box::new(reader),
            writer,
        };
        self.response = Some(response);
        Ok(())
    }

    /// The socket, once connected, e.g. to set a write timeout (sends
    /// otherwise block for as long as the server does not read). Its read
    /// timeout is managed by the client.
    pub fn get_ref(&self) -> Option<&TcpStream> {
        match &self.conn {
            Conn::Open { writer, .. } => Some(writer.get_ref()),
            _ => None,
        }
    }

    /// The server's handshake response, once connected.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
    }

    fn writer(&mut self) -> Result<&mut WsWriter<TcpStream>> {
        match &mut self.conn {
            Conn::Open { writer, .. } => Ok(writer),
            Conn::Idle => Err(Error::Closed),
            Conn::Closed => Err(Error::Closed),
        }
    }

    /// Sends a text message (and flushes it).
    pub fn send_message(&mut self, text: &str) -> Result<()> {
        self.writer()?.send_text(text)
    }

    /// Sends a binary message (and flushes it).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.writer()?.send_binary(data)
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives as a
    /// `Message::Pong` from [`recv`](Self::recv).
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.writer()?
            .send(Message::Ping(ws_core::Bytes::copy_from_slice(payload)))
    }

    /// Blocks for the next message: `Some(Ok(_))` for each message
    /// (including the server's close frame), `Some(Err(_))` for an error,
    /// `None` once the connection is over.
    pub fn recv(&mut self) -> Option<Result<Message>> {
        let reader = match &mut self.conn {
            Conn::Open { reader, .. } => reader,
            Conn::Idle => return None,
            Conn::Closed => return None,
        };
        match reader.read() {
            Ok(msg) => Some(Ok(msg)),
            Err(Error::Closed) => {
                self.conn = Conn::Closed;
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// An iterator over [`recv`](Self::recv).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }

    /// Calls `f` with every message until the connection is closed (the
    /// close frame included); returns the first error.
    pub fn receive_messages<F: FnMut(&Message)>(&mut self, mut f: F) -> Result<()> {
        while let Some(msg) = self.recv() {
            f(&msg?);
        }
        Ok(())
    }

    /// Reads lines from stdin and sends each as a text message while
    /// printing every received message as one line on stdout
    /// ([`display_line`]). At the end of stdin it sends a close (1000) and
    /// keeps printing what still arrives (echoes in flight) until the
    /// server's reply ends the connection, bounded by the close timeout;
    /// it returns `Ok(())` then, or when the server closes first. The
    /// server's reply to our own close is not printed.
    ///
    /// # Errors
    ///
    /// An error writing the output, or the first receive error (reported
    /// once the connection has ended).
    pub fn run_interactive(&mut self) -> Result<()> {
        self.run_interactive_with(io::BufReader::new(io::stdin()), io::stdout())
    }

    /// [`run_interactive`](Self::run_interactive) with any input and
    /// output (for tests and embedding). Input is read on its own thread,
    /// which is left behind (blocked reading) if the server closes first.
    pub fn run_interactive_with<R, W>(&mut self, input: R, mut output: W) -> Result<()>
    where
        R: BufRead + Send + 'static,
        W: Write,
    {
        let Conn::Open { reader, writer } = &mut self.conn else {
            return match self.conn {
                Conn::Idle => Err(Error::Closed),
                _ => Ok(()),
            };
        };
        let mut lines_writer = writer.clone();
        // Set once the input ended and our close is about to leave: a close
        // received after that is the server's reply, not news.
        let closing = Arc::new(AtomicBool::new(false));
        let input_closing = closing.clone();
        let input_thread = thread::Builder::new()
            .name("ws-stdin".into())
            .spawn(move || {
                for line in input.lines() {
                    let Ok(line) = line else { break };
                    if lines_writer.send_text(&line).is_err() {
                        return;
                    }
                }
                input_closing.store(true, Ordering::SeqCst);
                // Queue the close and return: the main thread keeps reading
                // (echoes in flight arrive before the reply), and the
                // connection's close timer bounds its wait.
                let close = ws_core::CloseFrame::new(CloseCode::NORMAL, "");
                let _ = lines_writer.send(Message::Close(Some(close)));
            })?;
        let mut first_err = None;
        let result = loop {
            match reader.read() {
                Ok(msg) => {
                    let reply = matches!(msg, Message::Close(_)) && closing.load(Ordering::SeqCst);
                    if let Some(line) = display_line(&msg).filter(|_| !reply) {
                        let printed = writeln!(output, "{line}").and_then(|()| output.flush());
                        if let Err(e) = printed {
                            let _ = writer.send(Message::Close(None));
                            break Err(Error::Io(e));
                        }
                    }
                }
                Err(Error::Closed) => break first_err.map_or(Ok(()), Err),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        };
        if input_thread.is_finished() {
            let _ = input_thread.join();
        }
        self.conn = Conn::Closed;
        result
    }

    /// Closes with 1000 (Normal Closure) and waits for the server's reply
    /// and the end of the connection, bounded by the close timeout.
    /// Messages still arriving meanwhile are discarded. Does nothing when
    /// not connected.
    pub fn close(&mut self) -> Result<()> {
        let Conn::Open { reader, writer } = &mut self.conn else {
            return Ok(());
        };
        let sent = writer.send(Message::Close(Some(ws_core::CloseFrame::new(
            CloseCode::NORMAL,
            "",
        ))));
        let result = match sent {
            Ok(()) | Err(Error::Closed) => loop {
                match reader.read() {
                    Ok(_) => {}
                    Err(Error::Closed) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
            Err(e) => Err(e),
        };
        self.conn = Conn::Closed;
        result
    }
}

impl Iterator for Messages<'_, Client> {
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        self.source.recv()
    }
}
