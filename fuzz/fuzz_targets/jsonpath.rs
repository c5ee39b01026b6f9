//! A JSONPath (first line) over a JSON document (the rest): parsing never panics and
//! keeps the text; selecting never panics; writing a value at a definite path and
//! selecting it there gives the value back.
#![no_main]

use asl::jsonpath::{JsonPath, Root};
use libfuzzer_sys::fuzz_target;
use oms_fuzz::{document, split_line};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some((text, rest)) = split_line(data) else {
        return;
    };
    let Ok(path) = JsonPath::parse(text) else {
        return;
    };
    assert_eq!(path.text(), text);
    assert_eq!(JsonPath::parse(&path.to_string()).as_ref(), Ok(&path));
    let doc = document(rest, json!({"a": [1, {"b": "c"}], "d": {"e": 2.5}}));
    let selected = path.select(&doc);
    if !path.is_definite() {
        assert!(
            matches!(selected, Ok(Value::Array(_))),
            "an indefinite path selects an array: {selected:?}"
        );
    }
    if *path.root() == Root::Input {
        let marker = json!({"written": [text]});
        let mut target = doc.clone();
        if path.set(&mut target, marker.clone()).is_ok() {
            assert!(path.is_definite(), "only a definite path may be written to");
            assert_eq!(
                path.select(&target).ok(),
                Some(marker),
                "a value written at {text} is not there"
            );
        }
    }
});
