//! Amazon States Language, evaluated as AWS Step Functions evaluates it.
//!
//! This crate is pure: no I/O, no clock, no randomness. Time, random numbers, ids and
//! task invocations are supplied by the caller (see [`host::Host`] and
//! [`eval::Effect`]), so the same evaluator serves the in-memory runner, the durable
//! runtime, TestState and the conformance harness.

pub mod choice;
pub mod error;
pub mod eval;
pub mod history;
pub mod host;
pub mod intrinsics;
pub mod item_reader;
pub mod jsonpath;
pub mod map_reader;
pub mod map_writer;
pub mod model;
pub mod query;
pub mod references;
pub mod resource;
pub mod runner;
pub mod teststate;
pub mod time;
pub mod validate;

pub use error::Failure;
pub use eval::{Delivery, Effect, Execution, ExecutionInfo, Status, TaskCall};
pub use host::Host;
pub use model::Machine;
