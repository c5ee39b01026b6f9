//! What the evaluator asks of the world. It lives apart from the evaluator so that the
//! history and the evaluator can both use it without importing each other.

use chrono::{DateTime, Utc};

/// What the evaluator asks of the world: the current time, random numbers and ids.
pub trait Host {
    fn now(&mut self) -> DateTime<Utc>;
    fn random_u64(&mut self) -> u64;
    fn uuid_v4(&mut self) -> String;
}
