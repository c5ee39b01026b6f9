//! What the fuzz targets share: splitting one input into parts, and hosts that make
//! evaluation deterministic (a fixed clock, a seeded generator), so that a crash
//! replays exactly from its input file.

use asl::jsonpath::{JsonPath, Root};
use asl::runner::SeededRandom;
use asl::Failure;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Splits `data` at its first newline: the head as text (None when it is not UTF-8),
/// and the rest. Targets that take an expression and a document read them this way,
/// so a seed file is the expression, a newline, then the JSON document.
pub fn split_line(data: &[u8]) -> Option<(&str, &[u8])> {
    let (head, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    Some((std::str::from_utf8(head).ok()?, rest))
}

/// The JSON document in `bytes`, or `fallback` when they are not one.
pub fn document(bytes: &[u8], fallback: Value) -> Value {
    serde_json::from_slice(bytes).unwrap_or(fallback)
}

/// The instant every target's clock stands at.
pub fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("2025-01-01T00:00:00Z is a timestamp")
}

/// A [`asl::Host`] and [`asl::intrinsics::IntrinsicHost`] with a fixed clock, a seeded
/// generator and, for intrinsics, `$` bound to `input` and `$$` to `context`.
pub struct FixedHost {
    pub random: SeededRandom,
    pub input: Value,
    pub context: Value,
}

impl FixedHost {
    pub fn new(input: Value) -> FixedHost {
        FixedHost {
            random: SeededRandom::new(7),
            input,
            context: serde_json::json!({"Execution": {"Id": "arn:fuzz", "Name": "fuzz"}}),
        }
    }
}

impl asl::Host for FixedHost {
    fn now(&mut self) -> DateTime<Utc> {
        start_time()
    }
    fn random_u64(&mut self) -> u64 {
        self.random.next_u64()
    }
    fn uuid_v4(&mut self) -> String {
        self.random.uuid_v4()
    }
}

impl asl::intrinsics::IntrinsicHost for FixedHost {
    fn resolve_path(&mut self, path: &str) -> Result<Value, Failure> {
        let p = JsonPath::parse(path).map_err(Failure::runtime)?;
        let root = match p.root() {
            Root::Input => &self.input,
            Root::Context => &self.context,
            Root::Variable(_) => return Err(Failure::runtime("no variables in this target")),
        };
        p.select(root)
            .map_err(|nf| Failure::runtime(nf.detail.as_str()))
    }
    fn random_u64(&mut self) -> u64 {
        self.random.next_u64()
    }
    fn uuid_v4(&mut self) -> String {
        self.random.uuid_v4()
    }
}
