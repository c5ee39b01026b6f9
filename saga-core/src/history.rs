//! Execution history at rest.
//!
//! A running execution's events are rows of `events`, one per event, appended at each
//! step. When the execution closes, the step that closes it replaces them with one row
//! of `histories`: every event, encoded (below) and compressed as one zstd frame. The
//! events of one execution repeat each other (a state's output is the next state's
//! input, its Task's parameters and result, and the final output), and one frame over
//! the whole history stores each repeated payload once, as a back-reference; a
//! dictionary trained on order-saga histories (`DICT_V1`) covers what every order's
//! history shares. The order saga's ~25 KB of history takes about 1.4 KB.
//!
//! The frame is built outside the store's writer (by the task closing the execution,
//! from the rows already committed and the closing step's events), so the writer only
//! inserts one row and deletes the others. A redrive appends rows again after the
//! frame's last event; its close folds them into a new frame. Reads merge both: the
//! frame's events, then any row after its last id.
//!
//! Encoding, before compression (`FORMAT` 1): per event, `id` and `previous_id` as
//! LEB128 varints, the timestamp's f64 bits (8 bytes, little endian), the type (varint
//! length, UTF-8) and the details (varint length + 1, then UTF-8; 0 for none). Exact:
//! what is decoded is what was written, byte for byte.

use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

/// The first byte of every stored frame and packed payload: the dictionary it is
/// compressed against (and, for a frame, the encoding above). New ones are written in
/// `FORMAT`; every older format stays readable, and one this oms does not know is
/// refused (a newer oms wrote it), never guessed at.
const FORMAT: u8 = 2;

/// Format 1: a zstd dictionary trained (`zstd --train --maxdict=65536`) on 200
/// histories of the order saga as one Standard machine: on 100 others it took the
/// frames from 2.7 KB to 1.4 KB. Read only, for frames written before format 2.
const DICT_V1: &[u8] = include_bytes!("history-dict-v1.zdict");

/// Format 2: trained (`saga-core/train-history-dict.py`) on 1,000 histories of the
/// order saga as it runs since issue 16, a Standard `order-saga` and its Express child
/// `order-prepare`, with the bench's one address and ids made random first. On 1,000
/// held-out histories it took the frames from 1,142 bytes (format 1) to 777: what
/// every order's history shares (state names, event shapes, field names) costs a few
/// bytes. A machine unlike the saga compresses about as well as without it.
const DICT_V2: &[u8] = include_bytes!("history-dict-v2.zdict");

/// zstd's level for histories: 3 (its default); 19 made the frames 9% smaller
/// (without a dictionary) at many times the CPU.
const LEVEL: i32 = 3;

/// zstd's level for a running execution's step rows: 1. They live until the close
/// folds them into the execution's frame, so a smaller row is worth less than the
/// CPU of every step (level 3 was 5% of saga4's CPU profile).
const STEP_LEVEL: i32 = 1;

/// How hard to compress: a frame kept (`Level::Kept`) or a step row (`Level::Step`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Kept,
    Step,
}

fn encoder(level: Level) -> &'static zstd::dict::EncoderDictionary<'static> {
    type Slot = std::sync::OnceLock<zstd::dict::EncoderDictionary<'static>>;
    static KEPT: Slot = Slot::new();
    static STEP: Slot = Slot::new();
    match level {
        Level::Kept => KEPT.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V2, LEVEL)),
        Level::Step => {
            STEP.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V2, STEP_LEVEL))
        }
    }
}

/// The dictionary a format's frames and payloads need, if this oms knows the format.
fn decoder(format: u8) -> Option<&'static zstd::dict::DecoderDictionary<'static>> {
    type Slot = std::sync::OnceLock<zstd::dict::DecoderDictionary<'static>>;
    static V1: Slot = Slot::new();
    static V2: Slot = Slot::new();
    match format {
        1 => Some(V1.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICT_V1))),
        2 => Some(V2.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICT_V2))),
        _ => None,
    }
}

/// The text `compressed` holds, decompressed against `format`'s dictionary, by this
/// thread's decompressor of that format (ListExecutions unpacks every row's payloads:
/// a zstd context set up for each would cost more than the unpacking).
fn decompress(format: u8, compressed: &[u8]) -> Result<Vec<u8>, String> {
    type Slot = std::cell::RefCell<Vec<(u8, zstd::bulk::Decompressor<'static>)>>;
    thread_local! {
        static DECOMPRESSORS: Slot = const { std::cell::RefCell::new(Vec::new()) };
    }
    let dict = decoder(format).ok_or_else(|| {
        format!("format {format} (this oms reads formats 1 to {FORMAT}; was it written by a newer one?)")
    })?;
    // Every frame this oms writes records its size. A large one (or a damaged header
    // claiming one) is streamed instead of allocated up front.
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .map_err(|_| "not a zstd frame".to_string())?
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= BULK_MAX_BYTES);
    let Some(size) = size else {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut zstd::stream::read::Decoder::with_prepared_dictionary(compressed, dict)
                .map_err(|e| e.to_string())?,
            &mut raw,
        )
        .map_err(|e| e.to_string())?;
        return Ok(raw);
    };
    DECOMPRESSORS.with_borrow_mut(|slots| {
        let at = match slots.iter().position(|(f, _)| *f == format) {
            Some(at) => at,
            None => {
                let d = zstd::bulk::Decompressor::with_prepared_dictionary(dict)
                    .map_err(|e| e.to_string())?;
                slots.push((format, d));
                slots.len() - 1
            }
        };
        slots[at]
            .1
            .decompress(compressed, size)
            .map_err(|e| e.to_string())
    })
}

/// Frames up to this size are decompressed in one call into a buffer of their size.
const BULK_MAX_BYTES: usize = 16 << 20;

/// `raw` compressed against the dictionary, by this thread's compressor: a zstd
/// context is hundreds of KB to set up, and every execution's start and close compress.
fn compress(raw: &[u8], level: Level) -> std::io::Result<Vec<u8>> {
    type Slot = std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>>;
    thread_local! {
        static KEPT: Slot = const { std::cell::RefCell::new(None) };
        static STEP: Slot = const { std::cell::RefCell::new(None) };
    }
    let slot = match level {
        Level::Kept => &KEPT,
        Level::Step => &STEP,
    };
    slot.with_borrow_mut(|slot| {
        let c = match slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::with_prepared_dictionary(encoder(
                level,
            ))?),
        };
        c.compress(raw)
    })
}

/// One history event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub previous_id: i64,
    pub timestamp: f64,
    pub kind: String,
    pub details: Option<String>,
}

/// Whether a history met an error on its way, even one it retried past or caught: an
/// event whose type says a call, a state or the execution failed, timed out or was
/// aborted (TaskFailed, LambdaFunctionTimedOut, MapRunAborted, ...).
pub fn met_an_error(events: &[StoredEvent]) -> bool {
    events.iter().any(|e| is_an_error(&e.kind))
}

/// Whether an event of type `kind` says something failed, timed out or was aborted.
pub fn is_an_error(kind: &str) -> bool {
    kind.ends_with("Failed") || kind.ends_with("TimedOut") || kind.ends_with("Aborted")
}

/// The frame for `events` (in id order), to keep.
pub fn encode(events: &[StoredEvent]) -> Result<Vec<u8>, StoreError> {
    encode_at(events, Level::Kept)
}

/// The frame for one step's `events` (in id order), kept until the execution closes:
/// compressed faster, read the same.
pub fn encode_step(events: &[StoredEvent]) -> Result<Vec<u8>, StoreError> {
    encode_at(events, Level::Step)
}

fn encode_at(events: &[StoredEvent], level: Level) -> Result<Vec<u8>, StoreError> {
    let mut raw = Vec::with_capacity(events.iter().map(|e| 24 + e.kind.len()).sum::<usize>());
    for e in events {
        crate::varint::put(&mut raw, e.id as u64);
        crate::varint::put(&mut raw, e.previous_id as u64);
        raw.extend_from_slice(&e.timestamp.to_bits().to_le_bytes());
        crate::varint::put(&mut raw, e.kind.len() as u64);
        raw.extend_from_slice(e.kind.as_bytes());
        match &e.details {
            Some(d) => {
                crate::varint::put(&mut raw, d.len() as u64 + 1);
                raw.extend_from_slice(d.as_bytes());
            }
            None => crate::varint::put(&mut raw, 0),
        }
    }
    let mut out = vec![FORMAT];
    let compressed = compress(&raw, level)
        .map_err(|e| StoreError::Failed(format!("cannot compress a history: {e}")))?;
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// The events of a frame `encode` wrote.
pub fn decode(frame: &[u8]) -> Result<Vec<StoredEvent>, StoreError> {
    let bad = |why: &str| StoreError::Failed(format!("a stored history is unreadable: {why}"));
    let (&format, compressed) = frame.split_first().ok_or_else(|| bad("empty"))?;
    let raw = decompress(format, compressed).map_err(|e| bad(&e))?;
    let mut r = Reader { raw: &raw, at: 0 };
    let mut events = Vec::new();
    while r.at < raw.len() {
        let id = r.varint()? as i64;
        let previous_id = r.varint()? as i64;
        let timestamp = f64::from_bits(u64::from_le_bytes(
            r.bytes(8)?.try_into().map_err(|_| bad("timestamp"))?,
        ));
        let len = r.varint()? as usize;
        let kind = r.text(len)?;
        let details = match r.varint()? {
            0 => None,
            n => Some(r.text(n as usize - 1)?),
        };
        events.push(StoredEvent {
            id,
            previous_id,
            timestamp,
            kind,
            details,
        });
    }
    Ok(events)
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn truncated() -> StoreError {
        StoreError::Failed("a stored history is unreadable: truncated".into())
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        crate::varint::read(self.raw, &mut self.at).ok_or_else(Self::truncated)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let end = self.at.checked_add(n).ok_or_else(Self::truncated)?;
        let b = self.raw.get(self.at..end).ok_or_else(Self::truncated)?;
        self.at = end;
        Ok(b)
    }

    fn text(&mut self, n: usize) -> Result<String, StoreError> {
        String::from_utf8(self.bytes(n)?.to_vec())
            .map_err(|_| StoreError::Failed("a stored history is unreadable: not UTF-8".into()))
    }
}

/// An execution's input or output as its `executions` row keeps it. Every history
/// event already holds it, in the frame; the row keeps its own copy so that
/// DescribeExecution and ListExecutions read one row, not a whole history. That copy
/// is compressed against the same dictionary (an order's ~1.2 KB of input and output
/// takes ~200 bytes): a BLOB of its format (`FORMAT`) then a zstd frame. A text too short to
/// gain stays TEXT, as every payload of an older data dir is; both read back the same.
pub fn pack_payload(text: &str) -> rusqlite::types::Value {
    pack_at(text, Level::Kept)
}

/// A running execution's snapshot packed as [`pack_payload`] packs, compressed faster:
/// it is rewritten at every step (and deleted at a success), so its size counts less
/// than the CPU of every step. Read back as a [`Payload`].
pub fn pack_snapshot(text: &str) -> rusqlite::types::Value {
    pack_at(text, Level::Step)
}

fn pack_at(text: &str, level: Level) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    if text.len() < PAYLOAD_MIN_BYTES {
        return Value::Text(text.to_string());
    }
    let compressed = compress(text.as_bytes(), level);
    match compressed {
        Ok(z) if z.len() + 1 < text.len() => {
            let mut blob = Vec::with_capacity(z.len() + 1);
            blob.push(FORMAT);
            blob.extend_from_slice(&z);
            Value::Blob(blob)
        }
        // Incompressible, or zstd refused: the text is as good a copy.
        _ => Value::Text(text.to_string()),
    }
}

/// Below this a payload is kept as text: zstd's frame header would eat the gain.
const PAYLOAD_MIN_BYTES: usize = 64;

/// A payload column (`input`, `output`) read back: TEXT as it is, a BLOB unpacked.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload(pub String);

impl rusqlite::types::FromSql for Payload {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match v {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Payload(s.to_string()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Blob(b) => unpack_payload(b)
                .map(Payload)
                .map_err(|e| FromSqlError::Other(e.into())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

fn unpack_payload(blob: &[u8]) -> Result<String, String> {
    let bad = |why: String| format!("a stored execution input or output is unreadable: {why}");
    let (&format, compressed) = blob.split_first().ok_or_else(|| bad("empty".into()))?;
    let raw = decompress(format, compressed).map_err(bad)?;
    String::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))
}

/// The execution's rowid, if it exists.
pub fn execution_id(c: &Connection, arn: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT rowid FROM executions WHERE arn = ?1")?
            .query_row([arn], |r| r.get(0))
            .optional()?,
    )
}

/// Every event of the execution, in id order: its frame's, then its steps' after them
/// (`step_events`), then any rows an older oms wrote (`events`) after those.
pub fn read(c: &Connection, execution_id: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let frame: Option<Vec<u8>> = c
        .prepare_cached("SELECT data FROM histories WHERE execution_id = ?1")?
        .query_row([execution_id], |r| r.get(0))
        .optional()?;
    let mut events = match frame {
        Some(f) => decode(&f)?,
        None => Vec::new(),
    };
    let mut after = events.last().map_or(0, |e| e.id);
    let mut steps = c.prepare_cached(
        "SELECT data FROM step_events WHERE execution_id = ?1 AND first_id > ?2 ORDER BY first_id",
    )?;
    let frames = steps.query_map(params![execution_id, after], |r| r.get::<_, Vec<u8>>(0))?;
    for step in frames {
        events.extend(decode(&step?)?);
    }
    after = events.last().map_or(after, |e| e.id);
    let mut q = c.prepare_cached(
        "SELECT id, previous_id, timestamp, type, details FROM events \
         WHERE execution_id = ?1 AND id > ?2 ORDER BY id",
    )?;
    let rows = q.query_map(params![execution_id, after], |r| {
        Ok(StoredEvent {
            id: r.get(0)?,
            previous_id: r.get(1)?,
            timestamp: r.get(2)?,
            kind: r.get(3)?,
            details: r.get(4)?,
        })
    })?;
    for row in rows {
        events.push(row?);
    }
    Ok(events)
}

/// Stores the events of one step of a running execution, `frame` being
/// [`encode_step`]'s of them, the first of them `first_id`. A step's events are never
/// split, so a step row is wholly before or after any event id a close folds through.
pub fn store_step(
    c: &Connection,
    execution_id: i64,
    first_id: i64,
    frame: &[u8],
) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO step_events (execution_id, first_id, data) VALUES (?1, ?2, ?3)")?
        .execute(params![execution_id, first_id, frame])?;
    Ok(())
}

/// Stores `frame` as the execution's history, in place of any older frame (an
/// execution that closes in its first step has no rows to replace).
pub fn store_frame(c: &Connection, execution_id: i64, frame: &[u8]) -> Result<(), StoreError> {
    c.prepare_cached("INSERT OR REPLACE INTO histories (execution_id, data) VALUES (?1, ?2)")?
        .execute(params![execution_id, frame])?;
    Ok(())
}

/// Stores `frame` as the execution's history up to event `through`, in place of its
/// steps and rows up to there and of any older frame (part of the closing step's write).
pub fn replace_with_frame(
    c: &Connection,
    execution_id: i64,
    frame: &[u8],
    through: i64,
) -> Result<(), StoreError> {
    store_frame(c, execution_id, frame)?;
    c.prepare_cached("DELETE FROM step_events WHERE execution_id = ?1 AND first_id <= ?2")?
        .execute(params![execution_id, through])?;
    c.prepare_cached("DELETE FROM events WHERE execution_id = ?1 AND id <= ?2")?
        .execute(params![execution_id, through])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: &str, details: Option<&str>) -> StoredEvent {
        StoredEvent {
            id,
            previous_id: id - 1,
            timestamp: 1_764_800_000.123_456 + id as f64 * 0.001,
            kind: kind.into(),
            details: details.map(str::to_string),
        }
    }

    #[test]
    fn a_history_reads_its_frame_then_its_step_rows_then_older_rows_and_folds_them() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(crate::store::SCHEMA).unwrap();
        let all: Vec<StoredEvent> = (1..=6)
            .map(|id| event(id, "PassStateEntered", Some(&format!(r#"{{"id":{id}}}"#))))
            .collect();
        // A redriven execution: its frame (1-2), two steps since (3-4, 5), and a row an
        // older oms wrote (6).
        store_frame(&c, 7, &encode(&all[..2]).unwrap()).unwrap();
        store_step(&c, 7, 3, &encode_step(&all[2..4]).unwrap()).unwrap();
        store_step(&c, 7, 5, &encode_step(&all[4..5]).unwrap()).unwrap();
        let e = &all[5];
        c.execute(
            "INSERT INTO events (execution_id, id, previous_id, timestamp, type, details) \
             VALUES (7, ?1, ?2, ?3, ?4, ?5)",
            params![e.id, e.previous_id, e.timestamp, e.kind, e.details],
        )
        .unwrap();
        assert_eq!(read(&c, 7).unwrap(), all);
        replace_with_frame(&c, 7, &encode(&all).unwrap(), 6).unwrap();
        let left: i64 = c
            .query_row(
                "SELECT (SELECT count(*) FROM step_events) + (SELECT count(*) FROM events)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            left, 0,
            "the close folded every step and row into the frame"
        );
        assert_eq!(read(&c, 7).unwrap(), all);
    }

    #[test]
    fn a_payload_reads_back_exactly_whether_packed_or_not() {
        let long = r#"{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"BENCH-0001","quantity":2}],"ship_to":{"name":"Load","line1":"1 Main St","city":"Boston","postal_code":"02101","country":"US"}}"#;
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (v)").unwrap();
        for text in [
            "{}",
            "\"short\"",
            long,
            "ünïcode ✓ but long enough to be packed, surely: 0123456789",
        ] {
            let packed = pack_payload(text);
            if text.len() >= PAYLOAD_MIN_BYTES {
                assert!(
                    matches!(packed, rusqlite::types::Value::Blob(_)),
                    "{text} was not packed"
                );
            }
            c.execute("DELETE FROM t", []).unwrap();
            c.execute("INSERT INTO t VALUES (?1)", [packed]).unwrap();
            let back: Payload = c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(back.0, text);
        }
        let packed = match pack_payload(long) {
            rusqlite::types::Value::Blob(b) => b,
            other => panic!("not packed: {other:?}"),
        };
        assert!(
            packed.len() * 2 < long.len(),
            "{} bytes packed from {}",
            packed.len(),
            long.len()
        );
    }

    #[test]
    fn a_damaged_or_newer_payload_is_an_error() {
        for blob in [vec![], vec![9, 1, 2], vec![FORMAT, 0xff, 0xff]] {
            assert!(unpack_payload(&blob).is_err(), "{blob:?} read as a payload");
        }
    }

    #[test]
    fn a_frame_decodes_to_exactly_the_events_encoded() {
        let payload = r#"{"input":"{\"order\":{\"id\":\"o-1\",\"lines\":[1,2,3]}}","inputDetails":{"truncated":false},"name":"Reserve"}"#;
        let events = vec![
            event(1, "ExecutionStarted", Some(payload)),
            event(2, "TaskStateEntered", Some(payload)),
            event(3, "PassStateExited", None),
            event(300, "ExecutionSucceeded", Some("{\"output\":\"ü → ✓\"}")),
            StoredEvent {
                previous_id: 0,
                timestamp: f64::MAX,
                ..event(1 << 40, "", Some(""))
            },
        ];
        let frame = encode(&events).unwrap();
        assert_eq!(decode(&frame).unwrap(), events);
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), []);
    }

    #[test]
    fn repeated_payloads_are_stored_about_once() {
        let payload = format!("{{\"order\":\"{}\"}}", "x".repeat(2000));
        let events: Vec<StoredEvent> = (1..=20)
            .map(|i| event(i, "TaskStateEntered", Some(&payload)))
            .collect();
        let frame = encode(&events).unwrap();
        assert!(frame.len() < 1000, "{} bytes", frame.len());
    }

    #[test]
    fn a_history_larger_than_one_bulk_call_is_streamed_back_whole() {
        let big = "x".repeat(BULK_MAX_BYTES + 1);
        let events = vec![event(1, "ExecutionStarted", Some(&big))];
        assert_eq!(decode(&encode(&events).unwrap()).unwrap(), events);
    }

    #[test]
    fn a_frame_of_an_older_format_still_reads() {
        let events = vec![
            event(
                1,
                "ExecutionStarted",
                Some(r#"{"input":"{\"order_id\":\"o-1\"}"}"#),
            ),
            event(2, "ExecutionSucceeded", Some(r#"{"output":"{}"}"#)),
        ];
        let current = encode(&events).unwrap();
        assert_eq!(current[0], FORMAT);
        let raw = decompress(FORMAT, &current[1..]).unwrap();
        let mut v1 = vec![1u8];
        v1.extend(
            zstd::bulk::Compressor::with_dictionary(LEVEL, DICT_V1)
                .unwrap()
                .compress(&raw)
                .unwrap(),
        );
        assert_eq!(decode(&v1).unwrap(), events);
        let mut packed_v1 = vec![1u8];
        packed_v1.extend(
            zstd::bulk::Compressor::with_dictionary(LEVEL, DICT_V1)
                .unwrap()
                .compress(b"{\"order_id\":\"o-1\"}")
                .unwrap(),
        );
        assert_eq!(unpack_payload(&packed_v1).unwrap(), r#"{"order_id":"o-1"}"#);
    }

    #[test]
    fn an_unknown_or_damaged_frame_is_an_error_not_a_guess() {
        let frame = encode(&[event(1, "ExecutionStarted", Some("{}"))]).unwrap();
        let mut newer = frame.clone();
        newer[0] = FORMAT + 1;
        let err = decode(&newer).unwrap_err().to_string();
        assert!(err.contains(&format!("format {}", FORMAT + 1)), "{err}");
        assert!(decode(&frame[..frame.len() - 3]).is_err());
        assert!(decode(&[]).is_err());
    }
}
