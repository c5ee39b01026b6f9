//! What the in-process service tests share: invokers that fail, hang or answer.
// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

use asl::{Failure, TaskCall};
use saga_core::runtime::{default_route, Invoker, Route};
use serde_json::Value;

pub struct NoTasks;

#[async_trait::async_trait]
impl Invoker for NoTasks {
    fn route(&self, call: &TaskCall) -> Route {
        default_route(call)
    }
    async fn invoke(&self, _: &str, _: &TaskCall) -> Result<Value, Failure> {
        Err(Failure::new("Test.NoTasks", "this test runs no tasks"))
    }
}

/// An invoker whose calls never return, as if the process died mid-call.
pub struct Hangs;

#[async_trait::async_trait]
impl Invoker for Hangs {
    fn route(&self, call: &TaskCall) -> Route {
        default_route(call)
    }
    async fn invoke(&self, _: &str, _: &TaskCall) -> Result<Value, Failure> {
        std::future::pending().await
    }
}

/// An invoker that answers every call with its state's name.
pub struct Answers;

#[async_trait::async_trait]
impl Invoker for Answers {
    fn route(&self, call: &TaskCall) -> Route {
        default_route(call)
    }
    async fn invoke(&self, _: &str, call: &TaskCall) -> Result<Value, Failure> {
        Ok(serde_json::json!({"answered": call.state_name}))
    }
}
