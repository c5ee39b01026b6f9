//! The durable runtime behind `oms up`: Step Functions on one machine.
//!
//! `api` holds the Step Functions API's shapes and the [`api::StepFunctions`] trait;
//! `store` keeps state machines, executions, history and task tokens in SQLite with
//! group commit; `runtime` drives executions through the `asl` evaluator, committing
//! every transition before acting on it.

pub mod api;
pub mod runtime;
pub mod store;
