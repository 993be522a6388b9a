//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! ws-core's split reader and writer ([`ws_core::rt::halves`]), each
//! operation run on the calling thread by [`ws_core::rt::block`], plus what
//! a thread needs that a task does not.
//!
//! - The halves wake each other with wakers that unpark the other thread: a
//!   writer that finds the reader writing a pong parks until the reader
//!   lets go of the write side; a reader at the end of the stream parks
//!   until the writer has written our close frame (or its close timer
//!   fires).
//! - A reader blocked in a read cannot be woken. When a writer holds the
//!   write side as the reader hands it a control reply, ws-core's halves
//!   wake the reader once the writer lets go, for the reader to write the
//!   reply; a blocked reader would only do so after its read returns. So
//!   every wake of the reader also raises [`Link::owed`], and a writer ends
//!   each operation by writing the queue again while it is raised: the
//!   reply leaves though no writer does anything more. A wake uses up the
//!   waker the reader registered, so this repeats only while the reader
//!   keeps polling.
//! - The close timer runs on the reader, which cannot see it while blocked
//!   in a read: [`WsWriter::close`] starts a watchdog thread that shuts the
//!   transport down if the reader has not ended by the close timeout (which
//!   ends the blocked read).

use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::{Duration, Instant};

use ws_core::rt::block::{self, BlockTimer};
use ws_core::rt::halves::{SplitReader, SplitWriter, split_halves};
use ws_core::{CloseCode, Connection, Error, Message};

use super::transport::{ReadHalf, SetReadTimeout, TimeoutCache, WriteHalf};
use super::{Messages, received};
use crate::Result;
#[cfg(doc)]
use crate::WebSocketStream;

/// What the halves share besides ws-core's write side: the reader's wake
/// and its end.
struct Link {
    /// The waker of the thread the reader runs on (its executor's).
    reader: Mutex<Option<Waker>>,
    /// The reader was woken: a writer ends its operation by writing the
    /// queue (control replies the reader handed over included).
    owed: AtomicBool,
    /// The reader has ended (a lock-free check for the writers).
    ended: AtomicBool,
    /// The same, for the close watchdog to wait on with `done_cv`.
    done: Mutex<bool>,
    done_cv: Condvar,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("owed", &self.owed)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing guarded here spans a panic point; poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Wake for Link {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.owed.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.reader).as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl Link {
    /// Registers the waker of the reader's thread, unless `last` (what the
    /// reader registered before) already wakes it.
    fn register(&self, last: &mut Option<Waker>, waker: &Waker) {
        if !last.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *lock(&self.reader) = Some(waker.clone());
            *last = Some(waker.clone());
        }
    }

    /// Marks the reader ended and wakes the close watchdog.
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        *lock(&self.done) = true;
        self.done_cv.notify_all();
    }

    /// Waits up to `timeout` for the reader to end; returns whether it did.
    fn wait_done(&self, timeout: Duration) -> bool {
        let guard = lock(&self.done);
        let (guard, _) = self
            .done_cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

type Reader<S> = SplitReader<ReadHalf<S>, BlockTimer, WriteHalf<S>>;

/// Splits a connection over `io` (see [`WebSocketStream::split`]).
pub(super) fn split<S>(
    conn: Connection,
    io: S,
    timeouts: TimeoutCache,
    read_timeout: Option<Duration>,
    ended: bool,
) -> (WsReader<S>, WsWriter<S>) {
    let close_timeout = conn.config().get_close_timeout();
    let io = Arc::new(io);
    let read = ReadHalf {
        io: io.clone(),
        timeouts,
    };
    let (inner, writer) = split_halves(conn, read, WriteHalf(io.clone()), BlockTimer);
    let link = Arc::new(Link {
        reader: Mutex::new(None),
        owed: AtomicBool::new(false),
        ended: AtomicBool::new(ended),
        done: Mutex::new(ended),
        done_cv: Condvar::new(),
    });
    (
        WsReader {
            inner,
            io: io.clone(),
            waker: Waker::from(link.clone()),
            registered: None,
            link: link.clone(),
            read_timeout,
            ended,
        },
        WsWriter {
            inner: Arc::new(Mutex::new(writer)),
            io,
            link,
            close_timeout,
        },
    )
}

/// The reading half of a split [`WebSocketStream`]: receives messages,
/// answers pings and close frames, and runs the connection's timers. It owns
/// the receiving side of the connection, so reading takes no lock (see
/// [`WebSocketStream::split`]).
pub struct WsReader<S> {
    inner: Reader<S>,
    io: Arc<S>,
    link: Arc<Link>,
    /// Wakes the reader's thread and raises [`Link::owed`].
    waker: Waker,
    /// The thread's waker last given to [`Link::register`].
    registered: Option<Waker>,
    read_timeout: Option<Duration>,
    /// The end was handled (transport shut down, writers told).
    ended: bool,
}

impl<S> fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader")
            .field("inner", &self.inner)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl<S> WsReader<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// The next message, `None` once the connection has ended (as
    /// [`WebSocketStream::recv`]).
    pub fn recv(&mut self) -> Option<Result<Message>> {
        super::end_of_stream(self.read())
    }

    /// Blocks until the next message; as [`WebSocketStream::read`]. No lock
    /// is taken to read or decode, so the writer half keeps sending
    /// meanwhile; control replies are written as [`WebSocketStream::split`]
    /// describes.
    pub fn read(&mut self) -> Result<Message> {
        let deadline = self.read_timeout.map(|d| Instant::now() + d);
        let WsReader {
            inner,
            link,
            waker,
            registered,
            ..
        } = self;
        let r = block::block_on_until(
            std::future::poll_fn(|cx| {
                link.register(registered, cx.waker());
                inner.poll_recv(&mut Context::from_waker(waker))
            }),
            deadline,
        );
        if self.inner.is_terminated() && !self.ended {
            self.ended = true;
            let _ = self.io.close_transport();
            self.link.end();
        }
        received(r)
    }

    /// As [`WebSocketStream::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout.filter(|d| !d.is_zero());
    }

    /// An iterator over incoming messages (see [`Messages`]).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }

    /// The transport shared by both halves.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S> Iterator for Messages<'_, WsReader<S>>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        self.source.recv()
    }
}

/// The writing half of a split [`WebSocketStream`]. Cloning it gives
/// another handle to the same connection (for several producer threads);
/// messages from different handles never interleave within a frame.
pub struct WsWriter<S> {
    /// ws-core's writer; the mutex serializes the clones.
    inner: Arc<Mutex<SplitWriter<WriteHalf<S>>>>,
    io: Arc<S>,
    link: Arc<Link>,
    close_timeout: Duration,
}

impl<S> fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWriter")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        WsWriter {
            inner: self.inner.clone(),
            io: self.io.clone(),
            link: self.link.clone(),
            close_timeout: self.close_timeout,
        }
    }
}

impl<S> WsWriter<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// Queues `msg` and writes out everything queued.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.feed_then_flush(&msg)
    }

    /// Queues `msg` without writing (writes only above
    /// `Config::write_buffer_limit`).
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.open()?;
        self.run(|w, cx| w.poll_feed(cx, &msg))
    }

    /// Queues and flushes a text message.
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.feed_then_flush(&Message::text(text))
    }

    /// Queues and flushes a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.feed_then_flush(&Message::binary(ws_core::Bytes::copy_from_slice(data)))
    }

    /// Writes out everything queued (control replies the reader handed over
    /// included). A write error shuts the transport down (bytes may have
    /// been lost), which also ends the reader half.
    pub fn flush(&mut self) -> Result<()> {
        self.run(|w, cx| w.poll_flush(cx))
    }

    /// Sends a close frame with `code` and `reason` (unless one was sent)
    /// and flushes it, as on every runtime. The peer's reply arrives on the
    /// [`WsReader`], which ends once the closing handshake is over.
    ///
    /// The close timeout still bounds that: a reader blocked in `read` cannot
    /// see a timer, so a watchdog thread shuts the transport down if the
    /// reader has not ended by then (which ends the blocked read). If no
    /// thread can be started, this waits for the reader itself.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()>
    where
        S: Send + Sync + 'static,
    {
        if self.link.ended.load(Ordering::Acquire) {
            return Ok(());
        }
        self.run(|w, cx| w.poll_close(cx, code, reason))?;
        let (link, io, timeout) = (self.link.clone(), self.io.clone(), self.close_timeout);
        let watchdog = move || {
            if !link.wait_done(timeout) {
                let _ = io.close_transport();
            }
        };
        let spawned = std::thread::Builder::new()
            .name("ws-close-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(watchdog.clone());
        if spawned.is_err() {
            watchdog();
        }
        Ok(())
    }

    /// The transport shared by both halves.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Sending after the reader ended fails at once.
    fn open(&self) -> Result<()> {
        if self.link.ended.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn feed_then_flush(&mut self, msg: &Message) -> Result<()> {
        self.open()?;
        let mut fed = false;
        self.run(|w, cx| {
            if !fed {
                ready!(w.poll_feed(cx, msg))?;
                fed = true;
            }
            w.poll_flush(cx)
        })
    }

    /// Runs one operation of ws-core's writer on this thread, then writes
    /// the queue again while the reader was woken meanwhile (see the
    /// [module docs](self)).
    fn run<T>(
        &self,
        mut op: impl FnMut(&mut SplitWriter<WriteHalf<S>>, &mut Context<'_>) -> Poll<Result<T>>,
    ) -> Result<T> {
        let mut w = lock(&self.inner);
        let r = block::block_on(std::future::poll_fn(|cx| op(&mut w, cx)));
        while self.link.owed.swap(false, Ordering::AcqRel) {
            // A failed write shut the transport down; the next operation
            // reports it.
            let _ = block::block_on(std::future::poll_fn(|cx| w.poll_flush(cx)));
        }
        r.unwrap_or_else(|e| Err(Error::Io(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WebSocketStream;
    use bytes::BytesMut;
    use std::io;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;
    use ws_core::{Config, Role};

    /// A socket whose `flush` waits while its gate is closed: a writer
    /// stopped there has written its queue and still holds the write side
    /// (as while a write blocks), without anything left to write.
    #[derive(Debug)]
    struct Gated {
        sock: TcpStream,
        closed: Mutex<bool>,
        cv: Condvar,
        /// A flush waits at the gate.
        waiting: AtomicBool,
    }

    impl Gated {
        fn open(&self) {
            *lock(&self.closed) = false;
            self.cv.notify_all();
        }
    }

    impl Read for &Gated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            (&self.sock).read(buf)
        }
    }

    impl Write for &Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            (&self.sock).write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            let mut closed = lock(&self.closed);
            while *closed {
                self.waiting.store(true, Ordering::SeqCst);
                closed = self.cv.wait(closed).unwrap_or_else(|p| p.into_inner());
            }
            Ok(())
        }
    }

    impl SetReadTimeout for Gated {
        fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            self.sock.set_read_timeout(timeout)
        }
        fn close_transport(&self) -> io::Result<()> {
            self.sock.close_transport()
        }
    }

    /// Reads from the raw peer socket until `dec` decodes a message.
    fn peer_read(sock: &mut TcpStream, dec: &mut Connection) -> io::Result<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(msg) = dec.poll_message().unwrap() {
                return Ok(msg);
            }
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            dec.handle_bytes(&buf[..n]);
        }
    }

    /// Halves over a gated socket pair, the raw peer socket, and a writer
    /// thread that has sent "held" and waits at the gate holding the write
    /// side (it does nothing more once let go).
    fn held_by_a_writer(
        role: Role,
        config: Config,
    ) -> (
        WsReader<Gated>,
        WsWriter<Gated>,
        TcpStream,
        thread::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let gated = Gated {
            sock: ours,
            closed: Mutex::new(true),
            cv: Condvar::new(),
            waiting: AtomicBool::new(false),
        };
        let ws = WebSocketStream::from_raw(gated, role, config, BytesMut::new());
        let (mut reader, writer) = ws.split();
        reader.set_read_timeout(Some(Duration::from_secs(5)));
        let mut holder = writer.clone();
        let writer_thread = thread::spawn(move || holder.send_text("held").unwrap());
        let t = Instant::now();
        while !writer.get_ref().waiting.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "no writer at the gate"
            );
            thread::sleep(Duration::from_millis(1));
        }
        (reader, writer, peer, writer_thread)
    }

    #[test]
    fn a_pong_the_reader_cannot_write_is_written_when_the_writer_lets_go() {
        let (mut reader, writer, mut peer, writer_thread) =
            held_by_a_writer(Role::Client, Config::default());
        let mut enc = Connection::new(Role::Server, Config::default());
        assert_eq!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::text("held")
        );
        enc.send_ping(b"x").unwrap();
        peer.write_all(&enc.take_transmit()).unwrap();

        // A writer holds the write side (as while queueing or writing).
        assert_eq!(reader.read().unwrap(), Message::Ping("x".into()));
        peer.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let r = peer_read(&mut peer, &mut enc);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::TimedOut),
            "the reader did not write past the holder: {r:?}"
        );

        // Letting go writes the pong, though no writer does anything more.
        writer.get_ref().open();
        writer_thread.join().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::Pong("x".into())
        );
    }

    #[test]
    fn a_server_reader_ends_once_a_writer_has_written_the_close_reply() {
        let config = Config::default().close_timeout(Duration::from_secs(10));
        let (mut reader, writer, mut peer, writer_thread) = held_by_a_writer(Role::Server, config);
        let mut enc = Connection::new(Role::Client, Config::default());
        assert_eq!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::text("held")
        );
        enc.close(CloseCode::NORMAL, "").unwrap();
        peer.write_all(&enc.take_transmit()).unwrap();

        // The close arrives while a writer holds the write side: the writer
        // writes the reply when it lets go.
        assert!(matches!(reader.read().unwrap(), Message::Close(Some(_))));
        let (done, wait_done) = mpsc::channel();
        let reader_thread = thread::spawn(move || {
            let t = Instant::now();
            let r = reader.read();
            let _ = done.send(());
            (r, t.elapsed())
        });
        thread::sleep(Duration::from_millis(50));
        writer.get_ref().open();

        // The client gets the reply and then the end of the stream, and the
        // reader (blocked reading) ends at once, not at the close timeout.
        assert!(matches!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::Close(Some(f)) if f.code == CloseCode::NORMAL
        ));
        wait_done
            .recv_timeout(Duration::from_secs(3))
            .expect("the reader ended");
        let (r, took) = reader_thread.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let mut rest = Vec::new();
        assert_eq!(peer.read_to_end(&mut rest).unwrap(), 0, "then the end");
        writer_thread.join().unwrap();
    }
}
