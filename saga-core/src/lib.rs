//! The durable runtime behind `oms up`: Step Functions on one machine.
//!
//! `api` holds the Step Functions API's shapes and the [`api::StepFunctions`] trait;
//! `dispatch` serves that trait over the awsJson 1.0 protocol; `store` keeps state
//! machines, executions, history and task tokens in SQLite with group commit;
//! `runtime` drives executions through the `asl` evaluator, committing every
//! transition before acting on it; `retention` deletes closed executions past their
//! retention period; `nested` runs executions started by a Task of another; `mock` answers Tasks from a
//! Step Functions Local mock configuration;
//! `observe` is the hook an observer (oms's metrics) hangs on;
//! `history` keeps a closed execution's history as one compressed frame; `varint` is
//! the LEB128 the stored encodings share;
//! `service` implements the API on top of both.

pub mod api;
pub mod dispatch;
pub mod history;
pub mod mock;
pub mod nested;
pub mod observe;
pub mod retention;
pub mod runtime;
pub mod service;
pub mod store;
pub mod varint;
