//! An intrinsic call (first line, e.g. `States.Format('{}', $.a)`) over an input
//! document (the rest): parsing and evaluation never panic, evaluation is
//! deterministic for a seeded host, and a result stays within the payload limit's
//! order of size (a hostile nesting must fail, not allocate without bound).
#![no_main]

use asl::eval::json_size;
use asl::intrinsics;
use libfuzzer_sys::fuzz_target;
use oms_fuzz::{document, split_line, FixedHost};
use serde_json::json;

/// Step Functions' payload limit (256 KiB); an intrinsic's result far beyond it means
/// evaluation grew something without checking.
const PAYLOAD_LIMIT_BYTES: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((text, rest)) = split_line(data) else {
        return;
    };
    let Ok(call) = intrinsics::parse(text) else {
        return;
    };
    let input = document(rest, json!({"a": 1, "s": "x,y", "arr": [1, 2, 2]}));
    let first = intrinsics::eval(&call, &mut FixedHost::new(input.clone()));
    let second = intrinsics::eval(&call, &mut FixedHost::new(input));
    assert_eq!(first, second, "the same seeded call gave two results");
    match first {
        Ok(v) => assert!(
            json_size(&v) <= 4 * PAYLOAD_LIMIT_BYTES,
            "{} bytes from {text}",
            json_size(&v)
        ),
        Err(f) => assert!(!f.error.is_empty(), "{f:?}"),
    }
});
