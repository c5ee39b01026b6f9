//! The activities as Lambda functions: one binary per activity (src/bin/), the order
//! saga's (`activity::ACTIVITIES`) and the amendments' (`amend::AMEND_ACTIVITIES`), each
//! the same handler `oms up` calls in-process, behind `lambda_runtime`. The error's name
//! becomes the Lambda errorType, so the state machine's Retry and Catch see
//! `Payment.Declined`, not a Rust type name.
//!
//! The store comes from `OMS_STORE`: `dynamodb:TABLE` (the default on AWS, with the
//! standard credential chain; `OMS_DYNAMODB_ENDPOINT` points it elsewhere) or
//! `sqlite:PATH` (local runs under `cargo lambda watch`). `OMS_SEED_DEMO=1` seeds the demo
//! catalog into an empty store. Fault plans are read only with `OMS_FAULT_INJECTION=1`.

use crate::activity::{invoke, Ctx};
use crate::errors::ActivityError;
use crate::store::Store;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;

impl From<ActivityError> for Diagnostic {
    fn from(e: ActivityError) -> Diagnostic {
        Diagnostic {
            error_type: e.name().to_string(),
            error_message: e.message,
        }
    }
}

/// Opens the store `spec` names (`sqlite:PATH` or `dynamodb:TABLE`); a DynamoDB table
/// is reached at `dynamodb_endpoint` when given, else where the SDK's chain says. An
/// SQLite file is encrypted with `key` (DynamoDB encrypts with its own KMS key).
pub async fn open_store(
    spec: &str,
    dynamodb_endpoint: Option<&str>,
    key: Option<&dbkey::DbKey>,
) -> Result<Arc<dyn Store>, String> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let store =
            crate::store::sqlite::SqliteStore::open_with_key(std::path::Path::new(path), key)
                .map_err(|e| e.to_string())?;
        return Ok(Arc::new(store));
    }
    if let Some(table) = spec.strip_prefix("dynamodb:") {
        let store = crate::store::dynamo::DynamoStore::connect(dynamodb_endpoint, table).await;
        return Ok(Arc::new(store));
    }
    Err(format!(
        "OMS_STORE: '{spec}' is neither sqlite:PATH nor dynamodb:TABLE"
    ))
}

/// A Lambda binary's whole `main`: serves activity `name` (e.g. "ReserveInventory").
/// It is a plain function that builds its own runtime so that each binary compiles in
/// moments: an async entry point would be instantiated again in every binary.
pub fn main(name: &'static str) -> Result<(), lambda_runtime::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(name))
}

/// Whether activity `name` is an amendment's (`amend::AMEND_ACTIVITIES`) rather than
/// the order saga's (`activity::ACTIVITIES`); an error when it is neither.
pub fn is_amendment(name: &str) -> Result<bool, String> {
    if crate::activity::by_name(name).is_some() {
        return Ok(false);
    }
    if crate::amend::AMEND_ACTIVITIES
        .iter()
        .any(|a| a.name == name)
    {
        return Ok(true);
    }
    Err(format!("no activity named {name}"))
}

async fn serve(name: &'static str) -> Result<(), lambda_runtime::Error> {
    let amendment = is_amendment(name)?;
    let spec = std::env::var("OMS_STORE")
        .map_err(|_| "OMS_STORE is not set (sqlite:PATH or dynamodb:TABLE)".to_string())?;
    let endpoint = std::env::var("OMS_DYNAMODB_ENDPOINT").ok();
    let key = dbkey::from_env()?;
    let store = open_store(&spec, endpoint.as_deref(), key.as_ref()).await?;
    // For local runs (`cargo lambda watch`) on an empty store: nothing to sell otherwise.
    if std::env::var_os("OMS_SEED_DEMO").is_some() {
        crate::seed::seed_once(&*store, "demo", &crate::seed::demo_stocked())
            .await
            .map_err(|e| e.to_string())?;
    }
    let ctx = Ctx::for_production(store);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let ctx = ctx.clone();
        async move {
            let out = if amendment {
                crate::amend::invoke(&ctx, name, &event.payload).await
            } else {
                invoke(&ctx, name, &event.payload).await
            };
            out.map_err(Diagnostic::from)
        }
    }))
    .await
}
