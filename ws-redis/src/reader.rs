//! The reader thread: reads the stream with `XREAD BLOCK` from the last id
//! it saw, hands each entry to the backplane (own entries, duplicates and
//! malformed entries skipped, gaps logged) and delivers the rest to the
//! local clients; while the hub is congested it stops reading (Redis keeps
//! the entries) instead of dropping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use ws_core::server::backplane::{Entry, Received};
use ws_core::server::hub::Wake;

use crate::stream::{StreamId, parse_top, parse_xread};
use crate::{Backoff, Shared};

/// Entries per read; also what the reader holds while the hub is congested.
const COUNT: usize = 512;

/// How long one `XREAD` blocks, so that stop is noticed within it.
const BLOCK: Duration = Duration::from_millis(500);

/// The longest wait on a congested hub between two checks (the hub's wake
/// normally comes first).
const CONGESTION_POLL: Duration = Duration::from_millis(200);

pub(crate) fn run(s: &Shared) {
    let bp = &s.backplane;
    let key = &s.config.stream;
    let wake: Arc<dyn Wake> = s.reader.clone();
    let mut registered = None;
    let mut held: Vec<Entry> = Vec::new();
    let mut last: Option<StreamId> = None;
    let mut con: Option<redis::Connection> = None;
    let mut backoff = Backoff::new();
    let mut down = false;
    let mut seen = s.reader.generation();
    while !s.stopped() {
        if !held.is_empty() {
            match bp.offer(&s.hub, &held, &wake, &mut registered, Instant::now()) {
                Ok(()) => held.clear(),
                Err(deadline) => {
                    let now = Instant::now();
                    let wait =
                        deadline.map_or(CONGESTION_POLL, |d| d.saturating_duration_since(now));
                    s.reader.wait(&mut seen, wait.min(CONGESTION_POLL));
                    continue;
                }
            }
        }
        if con.is_none() {
            match s.connect(BLOCK + Duration::from_secs(5)).and_then(|mut c| {
                let top = parse_top(
                    redis::cmd("XREVRANGE")
                        .arg(key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query::<Value>(&mut c)?,
                );
                Ok((c, top))
            }) {
                Ok((c, top)) => {
                    if last.is_none() {
                        let at = top.unwrap_or(StreamId::ZERO);
                        s.log(format_args!(
                            "joined stream {key} after entry {at} as {}",
                            bp.origin()
                        ));
                    }
                    last = Some(position(s, last, top));
                    if down {
                        s.log(format_args!("reader reconnected to Redis; resuming"));
                    }
                    down = false;
                    bp.set_linked(true);
                    backoff.reset();
                    con = Some(c);
                }
                Err(e) => {
                    if !down {
                        s.log(format_args!("reader cannot reach Redis ({e}); retrying"));
                    }
                    down = true;
                    bp.set_linked(false);
                    s.pause(&s.reader, backoff.next());
                    continue;
                }
            }
        }
        let (Some(c), Some(from)) = (con.as_mut(), last) else {
            continue;
        };
        let reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(key)
            .arg(from.to_string())
            .query::<Value>(c);
        match reply {
            Ok(v) => {
                let read = parse_xread(v);
                if read.unreadable > 0 {
                    s.log(format_args!(
                        "skipped {} unreadable stream items",
                        read.unreadable
                    ));
                }
                for (id, fields) in read.entries {
                    last = Some(id.max(from));
                    let received = match &fields {
                        Some(f) => bp.receive(f.iter().map(|(n, v)| (&n[..], &v[..]))),
                        None => bp.receive(std::iter::empty()),
                    };
                    match received {
                        Received::Deliver(e) => held.push(e),
                        Received::Gap { entry, missed } => {
                            s.log(format_args!(
                                "gap: {missed} entries of {} were never seen here (trimmed from the stream before this node read them)",
                                entry.origin
                            ));
                            held.push(entry);
                        }
                        Received::Malformed(m) => {
                            s.log(format_args!("entry {id}: {m}; skipped"));
                        }
                        Received::Own | Received::Duplicate => {}
                    }
                }
            }
            Err(e) => {
                s.log(format_args!(
                    "reader lost Redis ({e}); will resume after {from}"
                ));
                down = true;
                bp.set_linked(false);
                con = None;
                s.pause(&s.reader, backoff.next());
            }
        }
    }
    bp.set_linked(false);
}

/// Where to read from on a (re)connection: the newest entry at the first
/// connection (this node joins now; nothing before is owed to it); after a
/// reconnect, where it stopped, unless the stream's newest entry is older
/// than that (Redis lost the stream, or it was replaced), in which case
/// from the start: the backplane skips what was already seen.
fn position(s: &Shared, last: Option<StreamId>, top: Option<StreamId>) -> StreamId {
    match (last, top) {
        (None, top) => top.unwrap_or(StreamId::ZERO),
        (Some(last), Some(top)) if top >= last => last,
        (Some(last), _) => {
            s.log(format_args!(
                "the stream ends before {last}, where this node stopped (Redis lost it?); reading it from the start"
            ));
            StreamId::ZERO
        }
    }
}
