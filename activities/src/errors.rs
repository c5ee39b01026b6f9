//! Every error an activity can raise: its stable name (what Step Functions sees as the
//! Lambda errorType and what Retry/Catch match), whether retrying can help, and what it
//! means. This table is the one place these names are defined; docs/errors.md and
//! statemachines/schemas/errors.json are generated from it.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorKind {
    OrderInvalid,
    OrderNotFound,
    OrderConflict,
    OrderCancelled,
    OrderCompleted,
    InventoryOutOfStock,
    PaymentDeclined,
    PaymentGatewayTimeout,
    PaymentRefundRejected,
    PickItemDamaged,
    ShipAddressRejected,
    ShipmentNotFound,
    ShipmentInTransit,
    ShipmentNotPicked,
    ActivityUnavailable,
    StoreUnavailable,
    StoreContention,
}

pub struct ErrorSpec {
    pub kind: ErrorKind,
    pub name: &'static str,
    pub retryable: bool,
    pub meaning: &'static str,
}

pub const ERRORS: &[ErrorSpec] = &[
    ErrorSpec {
        kind: ErrorKind::OrderInvalid,
        name: "Order.Invalid",
        retryable: false,
        meaning: "The input breaks a rule (the message names the field and the rule); nothing was written.",
    },
    ErrorSpec {
        kind: ErrorKind::OrderNotFound,
        name: "Order.NotFound",
        retryable: false,
        meaning: "No order has this id: PlaceOrder did not run for it.",
    },
    ErrorSpec {
        kind: ErrorKind::OrderConflict,
        name: "Order.Conflict",
        retryable: false,
        meaning: "The order id is already taken by a different order.",
    },
    ErrorSpec {
        kind: ErrorKind::OrderCancelled,
        name: "Order.Cancelled",
        retryable: false,
        meaning: "The order was cancelled, or this step was already compensated; the forward step did nothing.",
    },
    ErrorSpec {
        kind: ErrorKind::OrderCompleted,
        name: "Order.Completed",
        retryable: false,
        meaning: "The order completed: a compensation does not undo it (its payment stays charged); nothing was changed.",
    },
    ErrorSpec {
        kind: ErrorKind::InventoryOutOfStock,
        name: "Inventory.OutOfStock",
        retryable: false,
        meaning: "All warehouses together do not have the quantity of some SKU available.",
    },
    ErrorSpec {
        kind: ErrorKind::PaymentDeclined,
        name: "Payment.Declined",
        retryable: false,
        meaning: "The gateway declined the charge (test token tok_declined).",
    },
    ErrorSpec {
        kind: ErrorKind::PaymentGatewayTimeout,
        name: "Payment.GatewayTimeout",
        retryable: true,
        meaning: "The gateway did not answer (test token tok_gateway_timeout); the idempotency key makes a retry safe.",
    },
    ErrorSpec {
        kind: ErrorKind::PaymentRefundRejected,
        name: "Payment.RefundRejected",
        retryable: false,
        meaning: "The gateway refused the refund (charges made with tok_refund_rejected); a person must look, then redrive.",
    },
    ErrorSpec {
        kind: ErrorKind::PickItemDamaged,
        name: "Pick.ItemDamaged",
        retryable: false,
        meaning: "The warehouse found an item damaged while picking.",
    },
    ErrorSpec {
        kind: ErrorKind::ShipAddressRejected,
        name: "Ship.AddressRejected",
        retryable: false,
        meaning: "The carrier rejected the shipping address (postal code 00000 is undeliverable).",
    },
    ErrorSpec {
        kind: ErrorKind::ShipmentNotFound,
        name: "Shipment.NotFound",
        retryable: false,
        meaning: "The order has no shipment with this id.",
    },
    ErrorSpec {
        kind: ErrorKind::ShipmentInTransit,
        name: "Shipment.InTransit",
        retryable: false,
        meaning: "The shipment has left the warehouse: cancel it before restocking it.",
    },
    ErrorSpec {
        kind: ErrorKind::ShipmentNotPicked,
        name: "Shipment.NotPicked",
        retryable: false,
        meaning: "The shipment cannot ship before it is picked.",
    },
    ErrorSpec {
        kind: ErrorKind::ActivityUnavailable,
        name: "Activity.Unavailable",
        retryable: true,
        meaning: "A transient failure of the activity (injected by fault injection); retry.",
    },
    ErrorSpec {
        kind: ErrorKind::StoreUnavailable,
        name: "Store.Unavailable",
        retryable: true,
        meaning: "The store could not be reached or was busy; nothing was half-written; retry.",
    },
    ErrorSpec {
        kind: ErrorKind::StoreContention,
        name: "Store.Contention",
        retryable: true,
        meaning: "Concurrent writers kept changing the same items; retry.",
    },
];

impl ErrorKind {
    pub fn spec(self) -> &'static ErrorSpec {
        ERRORS
            .iter()
            .find(|s| s.kind == self)
            .expect("every kind is in ERRORS")
    }
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    pub fn retryable(self) -> bool {
        self.spec().retryable
    }
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ERRORS.iter().find(|s| s.name == name).map(|s| s.kind)
    }
}

/// An activity's failure: a stable name and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityError {
    pub kind: ErrorKind,
    pub message: String,
    /// Made by a fault plan, not by the activity: one delivery of a call may get it
    /// while another delivery of the same call succeeds.
    pub injected: bool,
}

impl ActivityError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ActivityError {
        ActivityError {
            kind,
            message: message.into(),
            injected: false,
        }
    }
    /// A failure a fault plan injected into `activity`'s call.
    pub fn injected(kind: ErrorKind, activity: &str) -> ActivityError {
        ActivityError {
            injected: true,
            ..ActivityError::new(kind, format!("injected by fault plan for {activity}"))
        }
    }
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

impl fmt::Display for ActivityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.message)
    }
}

impl std::error::Error for ActivityError {}

impl From<crate::store::StoreError> for ActivityError {
    fn from(e: crate::store::StoreError) -> ActivityError {
        match e {
            crate::store::StoreError::ConditionFailed { .. } => {
                ActivityError::new(ErrorKind::StoreContention, e.to_string())
            }
            _ => ActivityError::new(ErrorKind::StoreUnavailable, e.to_string()),
        }
    }
}

/// The table as Markdown, for docs/errors.md.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Activity errors\n\nGenerated from `activities/src/errors.rs` (the test `errors_doc_is_current` fails when this file is stale).\nEach name reaches Step Functions as the Lambda errorType, so a state machine's Retry and Catch match it.\n\n| name | retryable | meaning |\n|---|---|---|\n",
    );
    for s in ERRORS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.name,
            if s.retryable { "yes" } else { "no" },
            s.meaning
        ));
    }
    out
}
