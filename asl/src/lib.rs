//! Amazon States Language, evaluated as AWS Step Functions evaluates it.
//!
//! This crate is pure: no I/O, no clock, no randomness. Time, random numbers, ids and
//! task invocations are supplied by the caller (see [`eval::Host`]), so the same
//! evaluator serves the in-memory runner, the durable runtime, TestState and the
//! conformance harness.

pub mod error;
pub mod intrinsics;
pub mod jsonpath;
pub mod validate;
