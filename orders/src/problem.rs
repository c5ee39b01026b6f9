//! The Orders API's errors, without HTTP: a status as a number, a code, a message and
//! the fields at fault. The oms binary turns them into responses.

use activities::errors::{ActivityError, ErrorKind};
use activities::model::FieldError;
use saga_core::api::ApiError;
use serde_json::{json, Value};

/// The Orders API's own error codes: what is wrong with a request as HTTP (its
/// body, type, size, origin or route) rather than with an order. The activities' codes
/// (`Order.Invalid`, `Shipment.NotFound`, ...) are in `activities::errors`.
pub mod code {
    /// The request is malformed: its body is not JSON or not the shape the route takes.
    pub const REQUEST_INVALID: &str = "Request.Invalid";
    /// The body is larger than the server accepts.
    pub const REQUEST_TOO_LARGE: &str = "Request.TooLarge";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "Request.UnsupportedMediaType";
    /// A browser sent a state-changing request from a page of another origin.
    pub const CROSS_ORIGIN: &str = "Request.CrossOrigin";
    /// No route has this path.
    pub const ROUTE_NOT_FOUND: &str = "Route.NotFound";
    /// The route exists, but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "Route.MethodNotAllowed";
    /// The server failed while answering.
    pub const INTERNAL_FAILURE: &str = "Server.InternalFailure";
    /// The fault plans of `PUT /admin/faults` are not JSON or break a rule.
    pub const FAULTS_INVALID: &str = "Faults.Invalid";
    /// An Idempotency-Key already names an order with other contents.
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IdempotencyKey.Reused";
    /// The server requires credentials (off loopback) and the request had none valid.
    pub const UNAUTHORIZED: &str = "Auth.Required";
    /// `/admin/faults` on a server started without `--fault-injection`.
    pub const FAULTS_DISABLED: &str = "Faults.Disabled";
    /// A retry of an order whose execution cannot be redriven (the message says why).
    pub const ORDER_NOT_RETRYABLE: &str = "Order.NotRetryable";
    /// A loopback server was called by a name that is not its own (DNS rebinding).
    pub const HOST_NOT_ALLOWED: &str = "Request.HostNotAllowed";
    /// No webhook subscription has this id.
    pub const SUBSCRIPTION_NOT_FOUND: &str = "Subscription.NotFound";
    /// A feed (`POST /imports`) has bad rows; nothing of it was applied.
    pub const FEED_INVALID: &str = "Feed.Invalid";
    /// A feed id names another file, or a feed being applied by another request.
    pub const FEED_CONFLICT: &str = "Feed.Conflict";
    /// An amendment sent with a `version` the order is no longer at.
    pub const ORDER_VERSION_STALE: &str = "Order.VersionStale";
    /// An amendment of an order past the point where it may change (the message says why).
    pub const ORDER_NOT_AMENDABLE: &str = "Order.NotAmendable";
    /// `PATCH /orders/{id}` on a backend without the order-amend state machine.
    pub const AMENDMENTS_UNAVAILABLE: &str = "Amendments.Unavailable";
    /// Every code above: the OpenAPI document must list them all (oms's test).
    pub const ALL: &[&str] = &[
        REQUEST_INVALID,
        REQUEST_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        CROSS_ORIGIN,
        ROUTE_NOT_FOUND,
        METHOD_NOT_ALLOWED,
        INTERNAL_FAILURE,
        FAULTS_INVALID,
        IDEMPOTENCY_KEY_REUSED,
        UNAUTHORIZED,
        FAULTS_DISABLED,
        HOST_NOT_ALLOWED,
        ORDER_NOT_RETRYABLE,
        SUBSCRIPTION_NOT_FOUND,
        FEED_INVALID,
        FEED_CONFLICT,
        ORDER_VERSION_STALE,
        ORDER_NOT_AMENDABLE,
        AMENDMENTS_UNAVAILABLE,
    ];
}

/// An Orders API error: an HTTP status, a code and a message, and for bad input the
/// fields and the rules they break.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }
    /// Bad input in one field: a 400 whose message names the field and the rule.
    pub fn invalid_field(code: &str, field: &str, rule: &str) -> Problem {
        let mut p = Problem::new(400, code, format!("{field}: {rule}"));
        p.fields = vec![FieldError {
            field: field.to_string(),
            rule: rule.to_string(),
        }];
        p
    }
    pub fn body(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            v["fields"] = activities::model::to_json(&self.fields);
        }
        v
    }
}

impl From<ActivityError> for Problem {
    fn from(e: ActivityError) -> Problem {
        let status = match e.kind {
            ErrorKind::OrderInvalid => 400,
            ErrorKind::OrderNotFound | ErrorKind::ShipmentNotFound => 404,
            ErrorKind::OrderConflict | ErrorKind::OrderCancelled => 409,
            k if k.retryable() => 503,
            _ => 422,
        };
        Problem::new(status, e.name(), e.message)
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        Problem::new(502, e.code.as_str(), e.message)
    }
}
