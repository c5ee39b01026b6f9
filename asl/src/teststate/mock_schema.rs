//! TestState's `mock.fieldValidationMode`: a mocked result held to the response shape
//! of the integration it stands in for, as AWS checks it against the service's API
//! model. `STRICT` (the default): required fields present and present fields of the
//! right type; `PRESENT`: present fields only; `NONE`: nothing. Fields the model does
//! not name pass, so do SDK extras such as `SdkHttpMetadata`.
//!
//! The shapes are the optimized integrations' responses (Lambda Invoke, DynamoDB
//! item calls, SQS SendMessage, SNS Publish, EventBridge PutEvents, Step Functions
//! StartExecution and its `.sync` DescribeExecution), taken from the services' API
//! references. Timestamps are strings, as AWS requires of a mock. `aws-sdk:*` results
//! are not checked: that needs every service's model, which oms does not carry.
//! Lambda's `Payload` is left unchecked: the model calls it a blob (a string), but the
//! optimized integration returns the function's JSON, and a mock mirroring a real run
//! must pass.
//! The messages are AWS's ("Mock result schema validation error: Field 'Entries' must
//! be an array"), which name the field, not its path.

use crate::resource::{Pattern, Target};
use serde_json::Value;

/// How strictly a mocked result is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidationMode {
    #[default]
    Strict,
    Present,
    None,
}

enum Ty {
    Str,
    Num,
    Bool,
    Any,
    OneOf(&'static [&'static str]),
    List(&'static Ty),
    /// A string-keyed map of values of one type (DynamoDB items, index capacities).
    Map(&'static Ty),
    Obj(&'static [Field]),
}

struct Field {
    name: &'static str,
    ty: Ty,
    required: bool,
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const CAPACITY: Ty = Ty::Obj(&[
    opt("ReadCapacityUnits", Ty::Num),
    opt("WriteCapacityUnits", Ty::Num),
    opt("CapacityUnits", Ty::Num),
]);

const CONSUMED_CAPACITY: Ty = Ty::Obj(&[
    opt("TableName", Ty::Str),
    opt("CapacityUnits", Ty::Num),
    opt("ReadCapacityUnits", Ty::Num),
    opt("WriteCapacityUnits", Ty::Num),
    opt("Table", CAPACITY),
    opt("LocalSecondaryIndexes", Ty::Map(&CAPACITY)),
    opt("GlobalSecondaryIndexes", Ty::Map(&CAPACITY)),
]);

const ITEM_COLLECTION_METRICS: Ty = Ty::Obj(&[
    opt("ItemCollectionKey", Ty::Map(&Ty::Any)),
    opt("SizeEstimateRangeGB", Ty::List(&Ty::Num)),
]);

const LAMBDA_INVOKE: &[Field] = &[
    opt("StatusCode", Ty::Num),
    opt("FunctionError", Ty::Str),
    opt("LogResult", Ty::Str),
    opt("Payload", Ty::Any),
    opt("ExecutedVersion", Ty::Str),
];

const DYNAMODB_GET_ITEM: &[Field] = &[
    opt("Item", Ty::Map(&Ty::Any)),
    opt("ConsumedCapacity", CONSUMED_CAPACITY),
];

const DYNAMODB_WRITE: &[Field] = &[
    opt("Attributes", Ty::Map(&Ty::Any)),
    opt("ConsumedCapacity", CONSUMED_CAPACITY),
    opt("ItemCollectionMetrics", ITEM_COLLECTION_METRICS),
];

const SQS_SEND_MESSAGE: &[Field] = &[
    opt("MD5OfMessageBody", Ty::Str),
    opt("MD5OfMessageAttributes", Ty::Str),
    opt("MD5OfMessageSystemAttributes", Ty::Str),
    opt("MessageId", Ty::Str),
    opt("SequenceNumber", Ty::Str),
];

const SNS_PUBLISH: &[Field] = &[opt("MessageId", Ty::Str), opt("SequenceNumber", Ty::Str)];

const EVENTS_PUT_EVENTS: &[Field] = &[
    opt("FailedEntryCount", Ty::Num),
    opt(
        "Entries",
        Ty::List(&Ty::Obj(&[
            opt("EventId", Ty::Str),
            opt("ErrorCode", Ty::Str),
            opt("ErrorMessage", Ty::Str),
        ])),
    ),
];

const SFN_START_EXECUTION: &[Field] = &[req("ExecutionArn", Ty::Str), req("StartDate", Ty::Str)];

const EXECUTION_STATUS: &[&str] = &[
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
];

/// DescribeExecution, the result of `startExecution.sync` (`.sync:2` carries Input
/// and Output as JSON, so those two are not typed).
const SFN_DESCRIBE_EXECUTION: &[Field] = &[
    req("ExecutionArn", Ty::Str),
    req("StateMachineArn", Ty::Str),
    opt("Name", Ty::Str),
    req("Status", Ty::OneOf(EXECUTION_STATUS)),
    req("StartDate", Ty::Str),
    opt("StopDate", Ty::Str),
    opt("Input", Ty::Any),
    opt("Output", Ty::Any),
    opt("InputDetails", Ty::Obj(&[opt("Included", Ty::Bool)])),
    opt("OutputDetails", Ty::Obj(&[opt("Included", Ty::Bool)])),
    opt("TraceHeader", Ty::Str),
    opt("MapRunArn", Ty::Str),
    opt("Error", Ty::Str),
    opt("Cause", Ty::Str),
    opt("StateMachineVersionArn", Ty::Str),
    opt("StateMachineAliasArn", Ty::Str),
    opt("RedriveCount", Ty::Num),
    opt("RedriveDate", Ty::Str),
    opt("RedriveStatus", Ty::Str),
    opt("RedriveStatusReason", Ty::Str),
];

/// The response shape a resource's mocked result is held to, if AWS checks one.
fn shape(target: &Target) -> Option<&'static [Field]> {
    match target {
        Target::LambdaInvoke {
            pattern: Pattern::RequestResponse,
        } => Some(LAMBDA_INVOKE),
        Target::Service {
            service,
            action,
            pattern,
        } => match (service.as_str(), action.as_str(), pattern) {
            ("dynamodb", "getItem", Pattern::RequestResponse) => Some(DYNAMODB_GET_ITEM),
            ("dynamodb", "putItem" | "updateItem" | "deleteItem", Pattern::RequestResponse) => {
                Some(DYNAMODB_WRITE)
            }
            ("sqs", "sendMessage", Pattern::RequestResponse) => Some(SQS_SEND_MESSAGE),
            ("sns", "publish", Pattern::RequestResponse) => Some(SNS_PUBLISH),
            ("events", "putEvents", Pattern::RequestResponse) => Some(EVENTS_PUT_EVENTS),
            ("states", "startExecution", Pattern::RequestResponse) => Some(SFN_START_EXECUTION),
            ("states", "startExecution", Pattern::Sync | Pattern::Sync2) => {
                Some(SFN_DESCRIBE_EXECUTION)
            }
            _ => None,
        },
        _ => None,
    }
}

fn schema_error(rule: String) -> String {
    format!("Mock result schema validation error: {rule}")
}

/// Checks a mocked result for a Task calling `target`; the error is AWS's message.
pub fn check(target: &Target, result: &Value, mode: FieldValidationMode) -> Result<(), String> {
    if mode == FieldValidationMode::None {
        return Ok(());
    }
    match (shape(target), result) {
        (Some(fields), Value::Object(_)) => {
            check_fields(fields, result, mode).map_err(schema_error)
        }
        _ => Ok(()),
    }
}

fn check_fields(fields: &[Field], obj: &Value, mode: FieldValidationMode) -> Result<(), String> {
    for f in fields {
        match obj.get(f.name) {
            Some(v) => check_value(f.name, &f.ty, v, mode)?,
            None if f.required && mode == FieldValidationMode::Strict => {
                return Err(format!("Required field '{}' is missing", f.name))
            }
            None => {}
        }
    }
    Ok(())
}

fn check_value(name: &str, ty: &Ty, v: &Value, mode: FieldValidationMode) -> Result<(), String> {
    let wrong = |what: &str| Err(format!("Field '{name}' must be {what}"));
    match (ty, v) {
        (Ty::Any, _)
        | (Ty::Str, Value::String(_))
        | (Ty::Num, Value::Number(_))
        | (Ty::Bool, Value::Bool(_)) => Ok(()),
        (Ty::Str, _) => wrong("a string"),
        (Ty::Num, _) => wrong("a number"),
        (Ty::Bool, _) => wrong("a boolean"),
        (Ty::OneOf(allowed), Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        (Ty::OneOf(_), Value::String(_)) => Err(format!("Field '{name}' is not an expected value")),
        (Ty::OneOf(_), _) => wrong("a string"),
        (Ty::List(item), Value::Array(items)) => items
            .iter()
            .try_for_each(|i| check_value(name, item, i, mode)),
        (Ty::List(_), _) => wrong("an array"),
        (Ty::Map(val), Value::Object(m)) => {
            m.values().try_for_each(|i| check_value(name, val, i, mode))
        }
        (Ty::Obj(fields), Value::Object(_)) => check_fields(fields, v, mode),
        (Ty::Map(_) | Ty::Obj(_), _) => wrong("an object"),
    }
}
