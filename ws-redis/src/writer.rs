//! The writer thread: appends the node's queued entries to the stream,
//! pipelined, and forgets them only once Redis answered; refreshes the
//! node's heartbeat key and the cluster-wide client count every second.

use std::time::{Duration, Instant};

use redis::Value;

use crate::stream::xadd;
use crate::{Backoff, Shared};

/// Entries per pipelined round trip.
const BATCH: usize = 512;

/// How often the heartbeat key is refreshed, and its lifetime: a node that
/// stops refreshing (killed, paused) drops out of the count after `TTL`.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TTL: Duration = Duration::from_secs(3);

/// SCAN rounds at most per count, so a huge keyspace cannot stall writes.
const MAX_SCAN_ROUNDS: usize = 64;

pub(crate) fn run(s: &Shared) {
    let bp = &s.backplane;
    let key = &s.config.stream;
    let beat_key = format!("{key}:node:{}", bp.origin());
    let beat_pattern = format!("{}:node:*", glob_escape(key));
    let mut con: Option<redis::Connection> = None;
    let mut backoff = Backoff::new();
    let mut down = false;
    let mut overflow_logged = 0;
    let mut next_beat = Instant::now();
    let mut seen = s.writer.generation();
    while !s.stopped() {
        let overflowed = bp.stats().overflowed;
        if overflowed > overflow_logged {
            s.log(format_args!(
                "buffer full: {} publishes so far reached only this node's clients",
                overflowed
            ));
            overflow_logged = overflowed;
        }
        let batch = bp.pending(BATCH);
        let now = Instant::now();
        let beat_due = now >= next_beat;
        if batch.is_empty() && !beat_due {
            s.writer.wait(&mut seen, next_beat - now);
            continue;
        }
        if con.is_none() {
            match s.connect(Duration::from_secs(5)) {
                Ok(c) => {
                    if down {
                        s.log(format_args!(
                            "writer reconnected to Redis; {} entries to send",
                            bp.pending_len()
                        ));
                    }
                    down = false;
                    con = Some(c);
                }
                Err(e) => {
                    if !down {
                        s.log(format_args!(
                            "writer cannot reach Redis ({e}); buffering publishes, retrying"
                        ));
                    }
                    down = true;
                    s.pause(&s.writer, backoff.next());
                    continue;
                }
            }
        }
        let Some(c) = con.as_mut() else { continue };
        let result = write(c, key, s.config.max_len, &batch).and_then(|()| {
            if beat_due {
                next_beat = Instant::now() + HEARTBEAT;
                let count = heartbeat(c, &beat_key, &beat_pattern, s.hub.len())?;
                bp.set_cluster_clients(count);
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                bp.confirm(batch.len());
                backoff.reset();
            }
            Err(e) => {
                s.log(format_args!(
                    "writer lost Redis ({e}); {} entries kept to resend",
                    bp.pending_len()
                ));
                down = true;
                con = None;
                s.pause(&s.writer, backoff.next());
            }
        }
    }
    // Leave the count at once rather than after the TTL.
    if let Some(c) = con.as_mut() {
        let _: redis::RedisResult<Value> = redis::cmd("DEL").arg(&beat_key).query(c);
    }
}

/// Appends `batch` in one round trip; `Ok` once Redis acknowledged all.
fn write(
    c: &mut redis::Connection,
    key: &str,
    max_len: usize,
    batch: &[ws_core::server::backplane::Entry],
) -> redis::RedisResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for entry in batch {
        xadd(&mut pipe, key, max_len, entry);
    }
    pipe.query::<Value>(c).map(drop)
}

/// Refreshes this node's heartbeat with its client count and sums the
/// counts of every live node.
fn heartbeat(
    c: &mut redis::Connection,
    beat_key: &str,
    pattern: &str,
    clients: usize,
) -> redis::RedisResult<usize> {
    redis::cmd("SET")
        .arg(beat_key)
        .arg(clients)
        .arg("PX")
        .arg(HEARTBEAT_TTL.as_millis() as u64)
        .query::<Value>(c)?;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..MAX_SCAN_ROUNDS {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    if keys.is_empty() {
        return Ok(clients);
    }
    let counts: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(c)?;
    Ok(counts.into_iter().flatten().sum::<u64>() as usize)
}

/// `s` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stream_key_with_glob_characters_matches_only_itself() {
        assert_eq!(super::glob_escape("ws:c*[1]?\\"), "ws:c\\*\\[1\\]\\?\\\\");
        assert_eq!(super::glob_escape("ws:cluster"), "ws:cluster");
    }
}
