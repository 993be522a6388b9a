//! The interactive session's input side, for [`Client::run_interactive`]
//! and [`Client::run_console_with`](super::Client::run_console_with): the
//! thread that reads the input through ws-core's console framer
//! ([`feed_input`]) and the [`Outbox`] it sends through, which follows the
//! client across reconnections while the calling thread reads and prints.
//!
//! [`Client::run_interactive`]: super::Client::run_interactive

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ws_core::rt::console::{Console, Ending};
use ws_core::{CloseCode, CloseFrame, Error, Message};

use crate::Result;
use crate::handshake::MaybeTls;
use crate::stream::WsWriter;

/// Where the interactive input thread sends: the current connection's
/// writer, replaced after each reconnection.
pub(super) struct Outbox {
    link: Mutex<Link>,
    changed: Condvar,
}

struct Link {
    writer: Option<WsWriter<MaybeTls<TcpStream>>>,
    /// One-message: the message is on its way and its reply not yet in.
    awaiting: bool,
    /// One-message: the reply timeout passed first.
    timed_out: bool,
    /// The input failed (unreadable, or text that is not UTF-8).
    input_err: Option<Error>,
    /// Counts the writers installed, so a failed send waits for a new one.
    generation: u64,
    /// The session is over: nothing more will be sent.
    over: bool,
}

impl Outbox {
    pub(super) fn new(writer: WsWriter<MaybeTls<TcpStream>>) -> Outbox {
        Outbox {
            link: Mutex::new(Link {
                writer: Some(writer),
                awaiting: false,
                timed_out: false,
                input_err: None,
                generation: 0,
                over: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `msg` on the current connection (without holding the lock
    /// while writing). If that fails and `wait` is set, waits for the next
    /// connection and sends it there. `false`: not sent, and nothing more
    /// will be.
    pub(super) fn send(&self, msg: Message, wait: bool) -> bool {
        loop {
            let (writer, generation) = {
                let link = self.lock();
                if link.over {
                    return false;
                }
                (link.writer.clone(), link.generation)
            };
            if let Some(mut writer) = writer {
                if writer.send(msg.clone()).is_ok() {
                    return true;
                }
                if !wait {
                    return false;
                }
            }
            let mut link = self.lock();
            while link.generation == generation && !link.over {
                link = self
                    .changed
                    .wait(link)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// The client reconnected: send on `writer` from now on.
    pub(super) fn relink(&self, writer: &WsWriter<MaybeTls<TcpStream>>) {
        let mut link = self.lock();
        link.writer = Some(writer.clone());
        link.generation += 1;
        drop(link);
        self.changed.notify_all();
    }

    /// The session is over: whether the reply timed out, and the input's
    /// error.
    pub(super) fn end(&self) -> (bool, Option<Error>) {
        let mut link = self.lock();
        link.over = true;
        link.writer = None;
        let ended = (link.timed_out, link.input_err.take());
        drop(link);
        self.changed.notify_all();
        ended
    }

    /// Waits up to `timeout` for the end of the session; `true`: over.
    pub(super) fn wait_over(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut link = self.lock();
        while !link.over {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            link = self
                .changed
                .wait_timeout(link, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// One-message: the message is about to leave; a reply is awaited.
    pub(super) fn await_reply(&self) {
        self.lock().awaiting = true;
    }

    /// A data message arrived: `true` if it is the awaited reply (taken,
    /// so the reply timeout no longer applies).
    pub(super) fn replied(&self) -> bool {
        let mut link = self.lock();
        let was = std::mem::replace(&mut link.awaiting, false);
        drop(link);
        if was {
            self.changed.notify_all();
        }
        was
    }

    /// Waits up to `timeout` for the reply; `true`: it did not come (and
    /// will no longer count as the reply).
    pub(super) fn reply_timed_out(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut link = self.lock();
        while link.awaiting && !link.over {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                link.awaiting = false;
                link.timed_out = true;
                return true;
            }
            link = self
                .changed
                .wait_timeout(link, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        false
    }

    /// The input failed: remembered for the end of the session.
    pub(super) fn input_failed(&self, e: Error) {
        self.lock().input_err.get_or_insert(e);
    }
}

/// Our close: 1000, no reason.
pub(super) fn close_normal() -> Message {
    Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
}

/// [`run_interactive`](super::Client::run_interactive)'s result from a console
/// session's: only a broken connection is an error.
pub(super) fn interactive_result(ending: Result<Ending>) -> Result<()> {
    match ending? {
        Ending::Broken(e) => Err(e),
        _ => Ok(()),
    }
}

/// The interactive input thread: `input` through the console's framer to
/// the outbox; at the end of input the one message and its reply timeout,
/// then our close (setting `closing` first).
pub(super) fn feed_input<R: Read>(
    mut input: R,
    console: &Console,
    outbox: &Outbox,
    closing: &AtomicBool,
    reconnecting: bool,
) {
    let mut framer = console.framer();
    let mut buf = vec![0u8; 8192];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => match framer.push(&buf[..n]) {
                Ok(msgs) => {
                    for msg in msgs {
                        if !outbox.send(msg, reconnecting) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    outbox.input_failed(e);
                    break;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                outbox.input_failed(Error::Io(e));
                break;
            }
        }
    }
    match framer.finish() {
        Ok(Some(msg)) if console.is_one_message() => {
            outbox.await_reply();
            if !outbox.send(msg, reconnecting) {
                return;
            }
            match console.get_reply_timeout() {
                Some(timeout) if outbox.reply_timed_out(timeout) => {}
                // The main thread closes once the reply is in.
                _ => return,
            }
        }
        Ok(Some(msg)) => {
            if !outbox.send(msg, reconnecting) {
                return;
            }
        }
        Ok(None) => {}
        Err(e) => outbox.input_failed(e),
    }
    closing.store(true, Ordering::SeqCst);
    // Queue the close and return: the main thread keeps reading (echoes in
    // flight arrive before the reply), and the connection's close timer
    // bounds its wait.
    let _ = outbox.send(close_normal(), reconnecting);
}
