//! The async halves driven by hand over in-memory transports: no runtime,
//! every poll and every wakeup explicit.

use super::*;
use crate::config::{Config, Role};
use crate::connection::Transmit;
use bytes::BytesMut;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Wake, Waker};
use std::time::Instant;

/// Counts wakeups.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Wakes>, Waker) {
    let wakes = Arc::new(Wakes::default());
    (wakes.clone(), Waker::from(wakes))
}

/// Bytes the test pushes in; `Pending` (remembering the waker) when empty.
#[derive(Clone, Default)]
struct FakeRead(Arc<Mutex<Vec<u8>>>);

impl ReadTransport for FakeRead {
    fn poll_read_into(
        &mut self,
        _cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut data = self.0.lock().unwrap();
        if data.is_empty() {
            return Poll::Pending;
        }
        buf.extend_from_slice(&data);
        let n = data.len();
        data.clear();
        Poll::Ready(Ok(n))
    }
}

/// A socket that is writable unless `full`; like a real one it remembers
/// one waker, the last poller's.
#[derive(Clone, Default)]
struct FakeWrite {
    wire: Arc<Mutex<Vec<u8>>>,
    full: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
    /// The write direction was shut down.
    shut: Arc<AtomicBool>,
}

impl FakeWrite {
    /// Makes it writable and fires the remembered waker (a readiness edge).
    fn drain(&self) {
        self.full.store(false, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl WriteTransport for FakeWrite {
    fn poll_write_queued(
        &mut self,
        tx: &mut impl Transmit,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.full.load(Ordering::SeqCst) {
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mut slices = [io::IoSlice::new(&[]); 8];
            let count = Transmit::transmit_slices(tx, &mut slices);
            if count == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut wire = self.wire.lock().unwrap();
            let n: usize = slices[..count].iter().map(|s| s.len()).sum();
            for s in &slices[..count] {
                wire.extend_from_slice(s);
            }
            drop(wire);
            Transmit::advance_transmit(tx, n);
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut.store(true, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

/// A timer that never fires.
struct Never;

impl Timer for Never {
    fn poll_at(&mut self, _cx: &mut Context<'_>, _at: Instant) -> bool {
        false
    }
}

type Halves = (
    SplitReader<FakeRead, Never, FakeWrite>,
    SplitWriter<FakeWrite>,
);

fn server_halves() -> (Connection, FakeRead, FakeWrite, Halves) {
    let peer = Connection::new(Role::Client, Config::default());
    let (read, write) = (FakeRead::default(), FakeWrite::default());
    let conn = Connection::new(Role::Server, Config::default());
    let halves = split_halves(conn, read.clone(), write.clone(), Never);
    (peer, read, write, halves)
}

/// Decodes what the server wrote so far.
fn peer_reads(peer: &mut Connection, write: &FakeWrite) -> Vec<Message> {
    let bytes = std::mem::take(&mut *write.wire.lock().unwrap());
    peer.handle_bytes(&bytes);
    let mut got = Vec::new();
    while let Some(m) = peer.poll_message().unwrap() {
        got.push(m);
    }
    got
}

#[test]
fn the_reader_writes_the_pong_itself_while_the_writer_is_idle() {
    let (mut peer, read, write, (mut reader, _writer)) = server_halves();
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    peer.send_ping(b"hi").unwrap();
    read.0
        .lock()
        .unwrap()
        .extend_from_slice(&peer.take_transmit());
    let got = reader.poll_recv(&mut cx);
    assert!(matches!(got, Poll::Ready(Some(Ok(Message::Ping(_))))));
    assert_eq!(
        peer_reads(&mut peer, &write),
        vec![Message::Pong(bytes::Bytes::from_static(b"hi"))]
    );
}

#[test]
fn the_reader_shuts_the_write_side_down_when_the_closing_handshake_ends() {
    // The writer's close returns once its frame is written; the reply
    // arrives on the reader, which must then shut the transport's write
    // direction down itself (a TLS transport's close_notify), since nobody
    // polls the writer any more.
    let (mut peer, read, write, (mut reader, mut writer)) = server_halves();
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let closed = writer.poll_close(&mut cx, CloseCode::NORMAL, "bye");
    assert!(closed.is_ready());
    assert!(!write.shut.load(Ordering::SeqCst));
    assert!(matches!(
        peer_reads(&mut peer, &write).as_slice(),
        [Message::Close(_)]
    ));
    // The peer's reply (queued automatically when its close arrived).
    read.0
        .lock()
        .unwrap()
        .extend_from_slice(&peer.take_transmit());
    assert!(matches!(
        reader.poll_recv(&mut cx),
        Poll::Ready(Some(Ok(Message::Close(_))))
    ));
    assert!(matches!(reader.poll_recv(&mut cx), Poll::Ready(None)));
    assert!(
        write.shut.load(Ordering::SeqCst),
        "the write side was shut down"
    );
}

#[test]
fn a_close_sent_by_the_writer_wakes_a_parked_reader() {
    let (_peer, _read, write, (mut reader, mut writer)) = server_halves();
    let (reader_wakes, reader_waker) = counting_waker();
    let (_, writer_waker) = counting_waker();
    assert!(
        reader
            .poll_recv(&mut Context::from_waker(&reader_waker))
            .is_pending()
    );
    // The socket is full, so the close frame cannot be written yet: the wake
    // must come from queueing the close, not from finishing its write.
    write.full.store(true, Ordering::SeqCst);
    let closed = writer.poll_close(
        &mut Context::from_waker(&writer_waker),
        CloseCode::NORMAL,
        "",
    );
    assert!(closed.is_pending());
    assert!(
        reader_wakes.0.load(Ordering::SeqCst) > 0,
        "the reader must re-poll to start its close timer"
    );
}

#[test]
fn when_both_halves_wait_on_a_full_socket_neither_wakeup_is_lost() {
    let (mut peer, read, write, (mut reader, mut writer)) = server_halves();
    let (reader_wakes, reader_waker) = counting_waker();
    let (writer_wakes, writer_waker) = counting_waker();
    let mut rcx = Context::from_waker(&reader_waker);
    let mut wcx = Context::from_waker(&writer_waker);
    // The writer's flush hits a full socket.
    write.full.store(true, Ordering::SeqCst);
    assert!(
        writer
            .poll_feed(&mut wcx, &Message::text("data"))
            .is_ready()
    );
    assert!(writer.poll_flush(&mut wcx).is_pending());
    // A ping arrives; the reader's attempt to write the pong is pending too,
    // and the socket now remembers only the reader's poll.
    peer.send_ping(b"p").unwrap();
    read.0
        .lock()
        .unwrap()
        .extend_from_slice(&peer.take_transmit());
    assert!(matches!(
        reader.poll_recv(&mut rcx),
        Poll::Ready(Some(Ok(Message::Ping(_))))
    ));
    let before = writer_wakes.0.load(Ordering::SeqCst);
    write.drain();
    assert!(
        writer_wakes.0.load(Ordering::SeqCst) > before,
        "the writer waiting on the same socket is woken"
    );
    assert!(reader_wakes.0.load(Ordering::SeqCst) > 0);
    // Whoever runs first writes everything, in order.
    assert!(matches!(writer.poll_flush(&mut wcx), Poll::Ready(Ok(()))));
    assert_eq!(
        peer_reads(&mut peer, &write),
        vec![
            Message::text("data"),
            Message::Pong(bytes::Bytes::from_static(b"p"))
        ]
    );
}

#[test]
fn start_send_never_waits_and_keeps_order_while_the_reader_holds_the_write_side() {
    let (mut peer, _read, write, (reader, mut writer)) = server_halves();
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    writer.start_send(Message::text("1")).unwrap();
    {
        // The reader holds the write side (writing a control reply).
        let _held = reader.replies.shared.try_claim().unwrap();
        writer.start_send(Message::text("2")).unwrap();
        writer.start_send(Message::text("3")).unwrap();
        assert!(writer.poll_flush(&mut cx).is_pending());
    }
    assert!(matches!(writer.poll_flush(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!(
        peer_reads(&mut peer, &write),
        vec![Message::text("1"), Message::text("2"), Message::text("3")]
    );
    let Ok((conn, _, _, _)) = reader.reunite(writer) else {
        panic!("the halves of one connection reunite");
    };
    assert_eq!(conn.state(), crate::State::Open);
}
