//! The domain's data: what activities take and return (their JSON Schemas are written to
//! statemachines/schemas/), and the rules an order must pass before anything is written.

use crate::errors::{ActivityError, ErrorKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most lines an order may have. It keeps the reservation (one stock write per line
/// and warehouse, plus shipments) inside one 100-write transaction.
pub const MAX_LINES: usize = 20;
pub const MAX_QUANTITY: i64 = 1000;
/// The longest a warehouse may be given to pick, or between its heartbeats: a year, the
/// longest a Standard execution can run. It also keeps every deadline the runtime
/// computes from these far inside what a timestamp can hold.
pub const MAX_PICK_SECONDS: u64 = 31_536_000;
/// Ids (orders, customers, SKUs), as the published schema states them for API Gateway;
/// `Order::check` applies the same rules with messages that name the field.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
pub const TOKEN_PATTERN: &str = "^tok_[a-z0-9_]{1,60}$";
/// A payment-method reference, as `PaymentGateway::vault` gives it for a token: what
/// the saga carries instead of the token. `is_method` applies the same rule.
pub const METHOD_PATTERN: &str = "^pm_[0-9a-f]{32}$";
pub const METHOD_PREFIX: &str = "pm_";
pub const METHOD_HEX_DIGITS: usize = 32;

/// A country we ship to, with the point distances to it are measured from (its
/// centroid; sourcing needs only a rough "nearest").
pub struct Country {
    pub code: &'static str,
    pub lat: f64,
    pub lon: f64,
}

pub const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        lat: 39.8,
        lon: -98.6,
    },
    Country {
        code: "CA",
        lat: 56.1,
        lon: -106.3,
    },
    Country {
        code: "MX",
        lat: 23.6,
        lon: -102.5,
    },
    Country {
        code: "GB",
        lat: 54.0,
        lon: -2.0,
    },
    Country {
        code: "IE",
        lat: 53.4,
        lon: -8.2,
    },
    Country {
        code: "FR",
        lat: 46.2,
        lon: 2.2,
    },
    Country {
        code: "DE",
        lat: 51.2,
        lon: 10.4,
    },
    Country {
        code: "NL",
        lat: 52.1,
        lon: 5.3,
    },
    Country {
        code: "ES",
        lat: 40.5,
        lon: -3.7,
    },
    Country {
        code: "IT",
        lat: 41.9,
        lon: 12.6,
    },
    Country {
        code: "JP",
        lat: 36.2,
        lon: 138.3,
    },
    Country {
        code: "AU",
        lat: -25.3,
        lon: 133.8,
    },
];

pub fn country(code: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.code == code)
}

/// The centre of each US ZIP code zone (the code's first digit): 0 New England and New
/// Jersey, 1 New York and Pennsylvania, 2 the Mid-Atlantic and Carolinas, 3 the
/// Southeast, 4 the Ohio valley, 5 the northern plains, 6 the central states, 7 the
/// south central states, 8 the mountain states, 9 the Pacific coast.
const US_ZIP_ZONES: [(f64, f64); 10] = [
    (42.0, -72.0),
    (41.5, -76.0),
    (37.0, -78.5),
    (32.5, -84.0),
    (40.0, -84.5),
    (45.0, -93.0),
    (40.0, -92.0),
    (32.0, -96.5),
    (39.0, -109.0),
    (38.0, -121.0),
];

/// Where an address is, roughly enough to tell the nearest warehouse: the US ZIP zone
/// for US addresses, the country's centroid elsewhere.
pub fn destination_point(address: &Address) -> Option<(f64, f64)> {
    if address.country == "US" {
        let zone = address
            .postal_code
            .trim()
            .chars()
            .next()
            .and_then(|c| c.to_digit(10));
        if let Some(z) = zone {
            return Some(US_ZIP_ZONES[z as usize]);
        }
    }
    country(&address.country).map(|c| (c.lat, c.lon))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    #[schemars(regex(pattern = ID_PATTERN))]
    pub sku: String,
    #[schemars(range(min = 1, max = MAX_QUANTITY))]
    pub quantity: i64,
}

/// How an order pays: exactly one of a gateway token or the payment-method reference
/// the gateway gave for it. The Orders API exchanges a token for a reference before the
/// saga starts, so the token is in no execution's input or history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// Exactly one: with no other field allowed, one property and only one (a draft 4
// model can say this; `oneOf` of `required` breaks strict validators).
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct Payment {
    /// A gateway token: `tok_` then lower-case letters, digits and `_`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "String", regex(pattern = TOKEN_PATTERN))]
    pub token: Option<String>,
    /// A payment-method reference the gateway gave for this order's token: `pm_` then
    /// 32 lower-case hex digits.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "String", regex(pattern = METHOD_PATTERN))]
    pub method: Option<String>,
}

impl Payment {
    pub fn token(token: &str) -> Payment {
        Payment {
            token: Some(token.to_string()),
            method: None,
        }
    }

    pub fn method(method: &str) -> Payment {
        Payment {
            token: None,
            method: Some(method.to_string()),
        }
    }
}

/// An optional field that, when given, is a string: `null` is refused as the published
/// schema refuses it, rather than read as absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A well-formed gateway token (TOKEN_PATTERN).
pub fn is_token(s: &str) -> bool {
    s.strip_prefix("tok_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 60
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// A well-formed payment-method reference (METHOD_PATTERN).
pub fn is_method(s: &str) -> bool {
    s.strip_prefix(METHOD_PREFIX).is_some_and(|hex| {
        hex.len() == METHOD_HEX_DIGITS
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// The longest each free-text field of an address may be, in characters.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_LINE1_CHARS: usize = 200;
pub const MAX_CITY_CHARS: usize = 100;
pub const MAX_POSTAL_CODE_CHARS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schemars(schema_with = "text_schema::<MAX_NAME_CHARS>")]
    pub name: String,
    #[schemars(schema_with = "text_schema::<MAX_LINE1_CHARS>")]
    pub line1: String,
    #[schemars(schema_with = "text_schema::<MAX_CITY_CHARS>")]
    pub city: String,
    #[schemars(schema_with = "text_schema::<MAX_POSTAL_CODE_CHARS>")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, one of the countries oms ships to.
    #[schemars(schema_with = "country_schema")]
    pub country: String,
}

/// Control characters, as `char::is_control` knows them (Unicode's Cc), in a JSON
/// Schema (ECMA-262) character class.
const CONTROL_CLASS: &str = "\\u0000-\\u001f\\u007f-\\u009f";

/// `text_rule` as a JSON Schema: at most `MAX` characters, none a control character,
/// one at least not white space.
fn text_schema<const MAX: usize>(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let c = CONTROL_CLASS;
    schemars::json_schema!({
        "type": "string",
        "maxLength": MAX,
        "pattern": format!("^[^{c}]*[^\\s{c}][^{c}]*$"),
    })
}

/// The countries oms ships to, from `COUNTRIES`.
fn country_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let codes: Vec<&str> = COUNTRIES.iter().map(|c| c.code).collect();
    schemars::json_schema!({ "type": "string", "enum": codes })
}

/// An order as a customer submits it. Prices are not part of it: they come from the
/// catalog when the order is placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    #[schemars(regex(pattern = ID_PATTERN))]
    pub order_id: String,
    #[schemars(regex(pattern = ID_PATTERN))]
    pub customer_id: String,
    #[schemars(length(min = 1, max = MAX_LINES))]
    pub lines: Vec<OrderLine>,
    pub payment: Payment,
    pub ship_to: Address,
}

/// How long a warehouse may take to pick each shipment, and how often it must say it is
/// still working. An order gives both or neither: the saga's ApplyDefaults state fills
/// in the whole object when it is absent (Step Functions can only merge shallowly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderOptions {
    #[schemars(range(min = 1, max = MAX_PICK_SECONDS))]
    pub pick_timeout_seconds: u64,
    #[schemars(range(min = 1, max = MAX_PICK_SECONDS))]
    pub pick_heartbeat_seconds: u64,
}

impl OrderOptions {
    /// The rules beyond the types: both durations within 1 to MAX_PICK_SECONDS.
    pub fn check(&self) -> Vec<FieldError> {
        let rule = format!("an integer number of seconds from 1 to {MAX_PICK_SECONDS}");
        [
            ("options.pick_timeout_seconds", self.pick_timeout_seconds),
            (
                "options.pick_heartbeat_seconds",
                self.pick_heartbeat_seconds,
            ),
        ]
        .into_iter()
        .filter(|(_, seconds)| !(1..=MAX_PICK_SECONDS).contains(seconds))
        .map(|(field, _)| FieldError {
            field: field.to_string(),
            rule: rule.clone(),
        })
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PricedLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// PlaceOrder's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlacedOrder {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
}

/// The input of the order-level steps (reserve, charge, and their compensations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRef {
    pub order_id: String,
}

/// The input of the per-shipment steps (pick, ship, and their compensations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentRef {
    pub order_id: String,
    pub shipment_id: String,
}

impl ShipmentRef {
    /// The shipment a per-shipment step's payload names (missing fields are empty).
    pub fn of_payload(payload: &serde_json::Value) -> ShipmentRef {
        let field = |name: &str| payload[name].as_str().unwrap_or_default().to_string();
        ShipmentRef {
            order_id: field("order_id"),
            shipment_id: field("shipment_id"),
        }
    }
}

/// PickShipment's input. With a task token the warehouse is asked to pick, and the
/// state machine waits for its answer (`activity::confirm_pick` returns the token to
/// answer with); without one the shipment is picked at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PickRequest {
    pub order_id: String,
    pub shipment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

/// A shipment id is `{order_id}-{n}`: the order it belongs to.
pub fn order_of_shipment(shipment_id: &str) -> Option<&str> {
    shipment_id
        .rsplit_once('-')
        .filter(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .map(|(order, _)| order)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentLine {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shipment {
    pub shipment_id: String,
    pub warehouse_id: String,
    pub lines: Vec<ShipmentLine>,
}

/// ReserveInventory's result: where each unit comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    pub order_id: String,
    pub shipments: Vec<Shipment>,
}

/// ReleaseInventory's result: the shipments whose stock went back (none when nothing
/// was reserved, or when a shipment had already shipped and was not cancelled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Release {
    pub order_id: String,
    pub released_shipments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Charge {
    pub order_id: String,
    pub charge_id: String,
    pub amount_cents: i64,
}

/// RefundPayment's result; `amount_cents` is 0 when nothing had been charged (the
/// charge is then voided, so a late charge attempt cannot go through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refund {
    pub order_id: String,
    pub refund_id: Option<String>,
    pub amount_cents: i64,
}

/// The result of the per-shipment steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentState {
    pub order_id: String,
    pub shipment_id: String,
    pub status: ShipmentStatus,
    pub tracking_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    Reserved,
    Picked,
    Shipped,
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Charged,
    Fulfilling,
    Completed,
    Compensating,
    Cancelled,
    CompensationFailed,
}

impl OrderStatus {
    /// Statuses after which the saga will not move the order again (a redrive may
    /// still take COMPENSATION_FAILED back to COMPENSATING).
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    /// The statuses the forward steps record (RecordExecution, MarkFulfilling).
    pub fn is_forward(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Fulfilling)
    }

    /// How far along an order is: a forward status is not recorded over a later one.
    pub fn rank(self) -> u8 {
        match self {
            OrderStatus::Pending => 0,
            OrderStatus::Reserved => 1,
            OrderStatus::Charged => 2,
            OrderStatus::Fulfilling => 3,
            OrderStatus::Compensating | OrderStatus::CompensationFailed => 4,
            OrderStatus::Completed | OrderStatus::Cancelled => 5,
        }
    }
}

/// Where a saga stopped and why, as the saga records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub step: Option<String>,
    pub error: String,
    pub cause: Option<String>,
}

/// RecordOrderStatus's input: the status moves the saga makes (COMPENSATING when a step
/// failed, CANCELLED or COMPLETED at the end, COMPENSATION_FAILED when a compensation
/// gave up) and, once, the execution that runs the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    pub order_id: String,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusRecorded {
    pub order_id: String,
    pub status: OrderStatus,
}

/// Decodes JSON into `T`, or says which field is wrong and why. A missing or unknown
/// field is named itself, not its parent object.
pub fn decode_fields<T: serde::de::DeserializeOwned>(
    input: &serde_json::Value,
) -> Result<T, FieldError> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(input, &mut track);
    T::deserialize(de).map_err(|e: serde_json::Error| {
        let path = track.path().to_string();
        let text = e.to_string();
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), named) {
            (".", Some(n)) => n.to_string(),
            (p, Some(n)) if text.starts_with("missing") => format!("{p}.{n}"),
            (".", None) => "input".to_string(),
            (p, _) => p.to_string(),
        };
        let rule = text.split(" at line ").next().unwrap_or(&text).to_string();
        FieldError { field, rule }
    })
}

/// Decodes an activity's input, naming the field that is wrong.
pub fn decode<T: serde::de::DeserializeOwned>(
    input: &serde_json::Value,
) -> Result<T, ActivityError> {
    decode_fields(input).map_err(|f| invalid(&[f]))
}

/// One broken rule: the field (as a JSON path) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

pub(crate) fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The rule a free text breaks, if any: 1 to `max` characters, not blank, and no
/// control characters (they would corrupt a shipping label or a log line). The rules
/// are told apart so that the message says which one the text broke.
pub fn text_rule(s: &str, max: usize) -> Option<String> {
    if s.chars().any(char::is_control) {
        Some("control characters (such as newline, tab or bell) are not allowed".into())
    } else if s.trim().is_empty() || s.chars().count() > max {
        Some(format!("1 to {max} characters, not blank"))
    } else {
        None
    }
}

impl Order {
    /// The rules an order must pass before anything is written, except that its SKUs
    /// exist (which needs the catalog: see `crate::domain::place_order`).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, rule: &str| {
            errors.push(FieldError {
                field: field.to_string(),
                rule: rule.to_string(),
            })
        };
        if !id_ok(&self.order_id) {
            bad("order_id", "1 to 64 letters, digits, '-' or '_'");
        }
        if !id_ok(&self.customer_id) {
            bad("customer_id", "1 to 64 letters, digits, '-' or '_'");
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            bad("lines", &format!("1 to {MAX_LINES} lines"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if !id_ok(&line.sku) {
                bad(
                    &format!("lines[{i}].sku"),
                    "1 to 64 letters, digits, '-' or '_'",
                );
            }
            if line.quantity < 1 || line.quantity > MAX_QUANTITY {
                bad(
                    &format!("lines[{i}].quantity"),
                    &format!("an integer from 1 to {MAX_QUANTITY}"),
                );
            }
            if self.lines[..i].iter().any(|l| l.sku == line.sku) {
                bad(&format!("lines[{i}].sku"), "each SKU on one line only");
            }
        }
        match (&self.payment.token, &self.payment.method) {
            (Some(token), None) if !is_token(token) => bad(
                "payment.token",
                "'tok_' then 1 to 60 lower-case letters, digits or '_'",
            ),
            (None, Some(method)) if !is_method(method) => bad(
                "payment.method",
                &format!("'{METHOD_PREFIX}' then {METHOD_HEX_DIGITS} lower-case hex digits"),
            ),
            (Some(_), None) | (None, Some(_)) => {}
            _ => bad(
                "payment",
                "exactly one of token (a gateway token) or method (a payment-method reference)",
            ),
        }
        let a = &self.ship_to;
        for (field, value, max) in [
            ("ship_to.name", &a.name, MAX_NAME_CHARS),
            ("ship_to.line1", &a.line1, MAX_LINE1_CHARS),
            ("ship_to.city", &a.city, MAX_CITY_CHARS),
            ("ship_to.postal_code", &a.postal_code, MAX_POSTAL_CODE_CHARS),
        ] {
            if let Some(rule) = text_rule(value, max) {
                bad(field, &rule);
            }
        }
        if country(&a.country).is_none() {
            let codes: Vec<&str> = COUNTRIES.iter().map(|c| c.code).collect();
            bad(
                "ship_to.country",
                &format!("a country oms ships to: {}", codes.join(", ")),
            );
        }
        errors
    }
}

/// Our own data as JSON. Every type passed here is plain data (strings, numbers,
/// vectors, options, maps with string keys), which serde_json always serializes: a
/// failure is a bug in the type, so it stops loudly instead of carrying `null` on
/// (a saga started with `null` input would fail far from the cause).
pub fn to_json<T: Serialize + ?Sized>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("plain data serializes to JSON")
}

/// [`to_json`] as text.
pub fn to_json_text<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes to JSON")
}

pub fn invalid(errors: &[FieldError]) -> ActivityError {
    let text: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.rule))
        .collect();
    ActivityError::new(ErrorKind::OrderInvalid, text.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published pattern and the checker state one rule.
    #[test]
    fn method_pattern_is_the_rule_is_method_applies() {
        let built = format!("^{METHOD_PREFIX}[0-9a-f]{{{METHOD_HEX_DIGITS}}}$");
        assert_eq!(METHOD_PATTERN, built);
        let good = format!("{METHOD_PREFIX}{}", "0a".repeat(METHOD_HEX_DIGITS / 2));
        assert!(is_method(&good));
        for bad in [
            format!("{METHOD_PREFIX}{}", "0A".repeat(METHOD_HEX_DIGITS / 2)),
            format!("{METHOD_PREFIX}{}", "0".repeat(METHOD_HEX_DIGITS - 1)),
            format!("{METHOD_PREFIX}{}", "0".repeat(METHOD_HEX_DIGITS + 1)),
            "tok_visa".to_string(),
        ] {
            assert!(!is_method(&bad), "{bad}");
        }
    }

    #[test]
    fn payment_is_a_token_or_a_method_never_both_never_null() {
        let method = format!("{METHOD_PREFIX}{}", "1".repeat(METHOD_HEX_DIGITS));
        let decoded: Payment = decode_fields(&serde_json::json!({"method": method})).unwrap();
        assert_eq!(decoded, Payment::method(&method));
        let null = decode_fields::<Payment>(&serde_json::json!({"token": null})).unwrap_err();
        assert_eq!(null.field, "token");
        let wire = serde_json::to_value(Payment::token("tok_visa")).unwrap();
        assert_eq!(wire, serde_json::json!({"token": "tok_visa"}));
    }
}
