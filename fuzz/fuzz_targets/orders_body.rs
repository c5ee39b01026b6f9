//! The Orders API's request bodies as the HTTP layer decodes them: `POST /orders`
//! (an order, with optional `options`), a warehouse's pick answer and the fault plans of
//! `PUT /faults`. Decoding and checking never panic, every error names a field and a
//! rule, and a decoded order written out again decodes to itself.
#![no_main]

use activities::faults::FaultPlan;
use activities::model::{decode_fields, text_rule, FieldError, Order, OrderOptions};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(mut body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // POST /orders takes `options` out before it decodes the order.
    let options = body.as_object_mut().and_then(|o| o.remove("options"));
    match decode_fields::<Order>(&body) {
        Ok(order) => {
            order.check().iter().for_each(names_field_and_rule);
            let again = serde_json::to_value(&order).expect("an Order serialises");
            assert_eq!(decode_fields::<Order>(&again).ok(), Some(order));
        }
        Err(f) => names_field_and_rule(&f),
    }
    if let Some(options) = &options {
        match decode_fields::<OrderOptions>(options) {
            Ok(o) => o.check().iter().for_each(names_field_and_rule),
            Err(f) => names_field_and_rule(&f),
        }
    }
    // A pick answer's note.
    if let Some(note) = body.get("damaged").and_then(Value::as_str) {
        if let Some(rule) = text_rule(note, 500) {
            assert!(!rule.is_empty());
        }
    }
    // PUT /faults: plans by activity.
    if let Ok(plans) = decode_fields::<BTreeMap<String, FaultPlan>>(&body) {
        let again = serde_json::to_value(&plans).expect("fault plans serialise");
        assert_eq!(
            decode_fields::<BTreeMap<String, FaultPlan>>(&again).ok(),
            Some(plans)
        );
    }
});

/// The error names a field and a rule. The one field with an empty name is a key that
/// is itself empty (`{"": 1}`): the rule then quotes it as ``` `` ```.
fn names_field_and_rule(f: &FieldError) {
    assert!(!f.rule.is_empty(), "{f:?}");
    assert!(
        !f.field.is_empty() || f.rule.contains("field ``"),
        "an error that names no field: {f:?}"
    );
}
