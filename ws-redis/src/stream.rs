//! The Redis side of the encoding: stream ids, the `XADD` command for an
//! entry, and the `XREAD`/`XREVRANGE` replies taken apart without trusting
//! their shape (a malformed entry is counted, never a panic).

use redis::Value;
use ws_core::server::backplane::Entry;

/// A stream entry id, `MS-SEQ`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StreamId(pub u64, pub u64);

impl StreamId {
    /// Before every entry.
    pub(crate) const ZERO: StreamId = StreamId(0, 0);

    pub(crate) fn parse(s: &[u8]) -> Option<StreamId> {
        let s = std::str::from_utf8(s).ok()?;
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Appends `XADD key MAXLEN ~ max_len * FIELD VALUE...` for `entry`.
pub(crate) fn xadd(pipe: &mut redis::Pipeline, key: &str, max_len: usize, entry: &Entry) {
    let cmd = pipe
        .cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*");
    for (name, value) in entry.fields() {
        cmd.arg(name).arg(&value[..]);
    }
}

/// One entry of a read: its id and its field/value pairs (`None` when
/// they were not a flat list of pairs of strings).
pub(crate) type RawEntry = (StreamId, Option<Vec<(Vec<u8>, Vec<u8>)>>);

/// What one `XREAD` brought: the entries with a readable id, in order, and
/// how many items were not even that.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Read {
    pub entries: Vec<RawEntry>,
    pub unreadable: usize,
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn items(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// The entries of an `XREVRANGE`/`XRANGE` reply or of one stream in an
/// `XREAD` reply: `[[id, [f, v, ...]], ...]`.
fn entries(v: Value, read: &mut Read) {
    for item in items(v).unwrap_or_default() {
        let mut parts = items(item).unwrap_or_default().into_iter();
        let Some(id) = parts
            .next()
            .and_then(bytes)
            .and_then(|b| StreamId::parse(&b))
        else {
            read.unreadable += 1;
            continue;
        };
        let fields = parts.next().and_then(items).and_then(|flat| {
            if flat.len() % 2 != 0 {
                return None;
            }
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                pairs.push((bytes(f)?, bytes(v)?));
            }
            Some(pairs)
        });
        read.entries.push((id, fields));
    }
}

/// Takes apart an `XREAD ... STREAMS key id` reply (RESP2 arrays or a RESP3
/// map); nil (the block timed out) is an empty read.
pub(crate) fn parse_xread(v: Value) -> Read {
    let mut read = Read::default();
    let streams: Vec<Value> = match v {
        Value::Nil => return read,
        Value::Map(pairs) => pairs.into_iter().map(|(_, e)| e).collect(),
        other => items(other)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| items(s).and_then(|kv| kv.into_iter().nth(1)))
            .collect(),
    };
    for s in streams {
        entries(s, &mut read);
    }
    read
}

/// The id of the newest entry from `XREVRANGE key + - COUNT 1`; `None` for
/// an empty or missing stream.
pub(crate) fn parse_top(v: Value) -> Option<StreamId> {
    let mut read = Read::default();
    entries(v, &mut read);
    read.entries.first().map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, kv: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(kv.iter().map(|s| bulk(s)).collect()),
        ])
    }

    #[test]
    fn ids_parse_and_order_as_redis_orders_them() {
        assert_eq!(
            StreamId::parse(b"1700000000000-3"),
            Some(StreamId(1_700_000_000_000, 3))
        );
        assert!(StreamId(2, 0) > StreamId(1, 99));
        assert_eq!(StreamId(5, 1).to_string(), "5-1");
        for bad in [&b""[..], b"5", b"a-1", b"1-", b"-1", b"1-2-3", b"\xff"] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_xread_reply_gives_its_entries_and_counts_what_is_not_one() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("ws:cluster"),
            Value::Array(vec![
                entry("1-0", &["origin", "a/1", "seq", "1"]),
                entry("1-1", &["odd"]),
                Value::Array(vec![bulk("not-an-id")]),
                Value::Int(7),
                entry("2-0", &[]),
            ]),
        ])]);
        let read = parse_xread(reply);
        assert_eq!(read.unreadable, 2);
        let ids: Vec<_> = read.entries.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [StreamId(1, 0), StreamId(1, 1), StreamId(2, 0)]);
        assert_eq!(
            read.entries[0].1.as_deref(),
            Some(
                &[
                    (b"origin".to_vec(), b"a/1".to_vec()),
                    (b"seq".to_vec(), b"1".to_vec())
                ][..]
            )
        );
        assert_eq!(read.entries[1].1, None, "odd field list");
        assert_eq!(read.entries[2].1.as_deref(), Some(&[][..]));
        assert_eq!(parse_xread(Value::Nil), Read::default());
        assert_eq!(parse_xread(Value::Okay), Read::default());
        let map = Value::Map(vec![(bulk("k"), Value::Array(vec![entry("3-0", &[])]))]);
        assert_eq!(parse_xread(map).entries[0].0, StreamId(3, 0));
    }

    #[test]
    fn the_top_of_a_stream_is_its_newest_id_or_none() {
        assert_eq!(
            parse_top(Value::Array(vec![entry("9-2", &["a", "b"])])),
            Some(StreamId(9, 2))
        );
        assert_eq!(parse_top(Value::Array(vec![])), None);
        assert_eq!(parse_top(Value::Nil), None);
    }
}
