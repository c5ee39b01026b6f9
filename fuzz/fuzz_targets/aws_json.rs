//! The awsJson 1.0 decoder of the Step Functions API: the first byte picks the
//! operation (as `X-Amz-Target` does), the rest is the body. Decoding never panics,
//! every failure is a client error (4xx), and a decoded input written out again decodes
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saga_core::dispatch::{canonical_input, operation_from_target, OPERATIONS, TARGET_PREFIX};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let name = OPERATIONS[usize::from(pick) % OPERATIONS.len()];
    let target = format!("{TARGET_PREFIX}.{name}");
    assert_eq!(operation_from_target(Some(&target)).ok(), Some(name));
    match canonical_input(name, body) {
        Ok(value) => {
            let again = serde_json::to_vec(&value).expect("a Value serialises");
            assert_eq!(
                canonical_input(name, &again).as_ref().ok(),
                Some(&value),
                "{name}: the decoded input does not decode to itself"
            );
        }
        Err(e) => {
            assert!(
                (400..500).contains(&e.http_status()),
                "{name}: a bad body is the client's fault, not {}: {e:?}",
                e.http_status()
            );
            assert!(!e.message.is_empty(), "{name}: {e:?}");
        }
    }
});
