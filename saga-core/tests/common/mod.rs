//! What the in-process service tests share: an invoker for machines that call no
//! tasks.

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
