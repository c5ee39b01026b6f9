//! The activities as Lambda functions named `oms-<function>`: the one place a Task
//! state's function ARN becomes an activity, and an activity's error becomes the
//! failure a Lambda function's error is in Step Functions. `oms up` runs them through
//! [`ActivityFunctions`]; `oms cost` resolves and fails its simulated calls the same way.

use crate::saga::FUNCTION_PREFIX;
use crate::warehouse::Warehouse;
use activities::activity::{self, ActivityDef, Ctx};
use activities::amend;
use activities::errors::ActivityError;
use activities::model::ShipmentRef;
use asl::{Failure, TaskCall};
use serde_json::{json, Value};
use std::sync::Arc;

/// The function a Task state calls: its Lambda function (ARN or name), else its resource.
pub fn function_of(call: &TaskCall) -> &str {
    call.function.as_deref().unwrap_or(&call.resource)
}

/// A function's name: the last part of its ARN, or the name itself.
pub fn function_name(function_arn: &str) -> &str {
    function_arn.rsplit(':').next().unwrap_or(function_arn)
}

/// What Step Functions reports for a function that does not exist.
pub fn function_not_found(function_arn: &str) -> Failure {
    Failure::new(
        asl::error::names::LAMBDA_RESOURCE_NOT_FOUND,
        format!("Function not found: {function_arn}"),
    )
}

/// The activity a local function ARN (or name) `...:function:oms-<function>` runs.
pub fn resolve(function_arn: &str) -> Result<&'static ActivityDef, Failure> {
    function_name(function_arn)
        .strip_prefix(FUNCTION_PREFIX)
        .and_then(|f| activity::by_function(f).or_else(|| amend::by_function(f)))
        .ok_or_else(|| function_not_found(function_arn))
}

/// An activity's error as a Lambda function's error reaches Step Functions: the name
/// as the error, and AWS's JSON error payload as the cause.
pub fn lambda_failure(e: &ActivityError) -> Failure {
    Failure::new(
        e.name(),
        json!({"errorType": e.name(), "errorMessage": e.message}).to_string(),
    )
}

/// The activities as the in-process handler of Task states whose function is
/// `oms-<function>`; pick requests also go to the warehouse.
pub struct ActivityFunctions {
    ctx: Ctx,
    warehouse: Arc<Warehouse>,
}

impl ActivityFunctions {
    pub fn new(ctx: Ctx, warehouse: Arc<Warehouse>) -> ActivityFunctions {
        ActivityFunctions { ctx, warehouse }
    }

    /// Runs the task's activity, as its Lambda function would.
    pub async fn invoke(&self, call: &TaskCall) -> Result<Value, Failure> {
        let def = resolve(function_of(call))?;
        let out = if amend::by_key(def.key).is_some() {
            amend::invoke(&self.ctx, def.key, &call.payload).await
        } else {
            activity::invoke(&self.ctx, def.key, &call.payload).await
        }
        .map_err(|e| lambda_failure(&e))?;
        if def.key == "pick" {
            if let Some(token) = call.payload.get("task_token").and_then(Value::as_str) {
                let target = ShipmentRef::of_payload(&call.payload);
                self.warehouse.requested(target, token.to_string());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_function_arns_resolve_to_their_activity_and_others_are_not_found() {
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:oms-reserve-inventory";
        assert_eq!(resolve(arn).map(|d| d.key).ok(), Some("reserve"));
        assert_eq!(
            resolve("oms-charge-payment").map(|d| d.key).ok(),
            Some("charge")
        );
        for unknown in [
            "arn:aws:lambda:us-east-1:0:function:reserve-inventory",
            "oms-nope",
        ] {
            let failure = resolve(unknown).err().expect(unknown);
            assert_eq!(failure.error, "Lambda.ResourceNotFoundException");
            let cause = format!("Function not found: {unknown}");
            assert_eq!(failure.cause.as_deref(), Some(cause.as_str()));
        }
    }
}
