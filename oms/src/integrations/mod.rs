//! AWS service integrations for `oms up` (docs/integrations.md): Task states whose
//! resource is `arn:aws:states:::SERVICE:ACTION` (an optimized integration) or
//! `arn:aws:states:::aws-sdk:SERVICE:ACTION`, sent by an `oms.toml` rule with
//! `aws_endpoint` or `aws_region` to the service, with AWS's request and result
//! shapes and AWS's error names so that Retry and Catch behave as on AWS.
//!
//! One signed caller serves every awsJson service (services.rs is the table); SNS
//! (Query protocol) and S3 (REST-XML) have small hand-written exceptions. HTTP Tasks
//! (`arn:aws:states:::http:invoke`, http_task.rs) use the same connector unsigned,
//! with the EventBridge connections of oms.toml (connections.rs).

mod connections;
mod errors;
pub mod folder;
mod http_task;
mod s3;
mod services;
mod signed;
mod sns;
mod xml;

use asl::resource::{Pattern, Target};
use asl::{Failure, TaskCall};
use errors::Kind;
use serde_json::{json, Map, Value};
use services::{Optimized, Protocol, Service};

pub use connections::{ConnectionConfig, Connections};

/// Calls AWS services and HTTP APIs for Task states: one connector and one
/// credentials cache for every rule.
pub struct AwsServices {
    client: signed::Client,
    connections: Connections,
}

impl Default for AwsServices {
    fn default() -> Self {
        AwsServices::new(Connections::default())
    }
}

/// Whether a task is an HTTP Task (`arn:aws:states:::http:invoke`).
pub fn is_http_task(call: &TaskCall) -> bool {
    matches!(&call.target, Target::Service { service, action, .. }
        if service == "http" && action == "invoke")
}

/// One call being made: the service, how it was named, where it goes.
struct Call<'a> {
    service: &'static Service,
    kind: Kind<'static>,
    action: &'a str,
    /// The endpoint's base URL, without a trailing slash.
    base: String,
    region: &'a str,
    /// Whether `base` is AWS's own (S3 then addresses buckets as host names).
    aws_endpoint: bool,
}

impl AwsServices {
    /// HTTP Tasks authorize with `connections`.
    pub fn new(connections: Connections) -> AwsServices {
        AwsServices {
            client: signed::Client::new(),
            connections,
        }
    }

    /// Performs an HTTP Task; `region` is the one its User-Agent names.
    pub async fn http_invoke(&self, region: &str, call: &TaskCall) -> Result<Value, Failure> {
        http_task::invoke(&self.client, &self.connections, region, &call.payload).await
    }

    /// Performs an HTTP Task for TestState: its result, and the request and answer
    /// as TRACE inspection data shows them.
    pub async fn http_test_call(
        &self,
        region: &str,
        call: &TaskCall,
        reveal_secrets: bool,
    ) -> saga_core::runtime::TestCall {
        let (result, trace) = http_task::invoke_traced(
            &self.client,
            &self.connections,
            region,
            &call.payload,
            Some(reveal_secrets),
        )
        .await;
        let (request, response) = match trace {
            Some(t) => http_task::inspection(&t),
            None => (None, None),
        };
        saga_core::runtime::TestCall {
            result,
            request,
            response,
        }
    }

    /// Performs `call` against `endpoint` (AWS's endpoint for `region` when `None`).
    pub async fn call(
        &self,
        endpoint: Option<&str>,
        region: &str,
        execution_arn: &str,
        call: &TaskCall,
    ) -> Result<Value, Failure> {
        let (service_name, action) = service_call(call)?;
        let (service, kind) = resolve(service_name, action, &call.resource)?;
        let c = Call {
            service,
            kind,
            action,
            base: endpoint
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| default_endpoint(service, region)),
            region,
            aws_endpoint: endpoint.is_none(),
        };
        let payload = match kind {
            Kind::Optimized(o) => optimized_request(o, action, &call.payload, execution_arn)?,
            Kind::Sdk => call.payload.clone(),
        };
        let result = match service.protocol {
            Protocol::Json {
                version,
                target_prefix,
            } => self.json_call(&c, version, target_prefix, &payload).await?,
            Protocol::Query => sns::call(&self.client, &c, &payload).await?,
            Protocol::RestXml => s3::call(&self.client, &c, &payload).await?,
        };
        match kind {
            Kind::Optimized(o) => optimized_result(o, action, result),
            Kind::Sdk => Ok(result),
        }
    }

    /// An awsJson call: the Parameters as the body, the answer as the result.
    async fn json_call(
        &self,
        c: &Call<'_>,
        version: &str,
        target_prefix: &str,
        payload: &Value,
    ) -> Result<Value, Failure> {
        let request = signed::Request {
            method: "POST",
            url: format!("{}/", c.base),
            headers: vec![
                (
                    "content-type".into(),
                    format!("application/x-amz-json-{version}"),
                ),
                (
                    "x-amz-target".into(),
                    format!("{target_prefix}.{}", pascal_case(c.action)),
                ),
            ],
            body: payload.to_string().into_bytes(),
            signing_name: c.service.signing_name,
            region: c.region.to_string(),
            s3: false,
        };
        let response = self.send(c, request).await?;
        if !(200..300).contains(&response.status) {
            let e = errors::from_json(
                response.header("x-amzn-errortype"),
                &response.body,
                response.status,
                &response.request_id(),
            );
            return Err(errors::failure(c.service, c.kind, &e));
        }
        if response.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            c.client_failure(format!("{} answered JSON that does not parse: {e}", c.base))
        })
    }

    async fn send(&self, c: &Call<'_>, r: signed::Request) -> Result<signed::Response, Failure> {
        self.client.send(r).await.map_err(|e| c.send_failure(e))
    }
}

impl Call<'_> {
    /// No answer (or none that parses): the SDK's client-side error.
    fn client_failure(&self, message: String) -> Failure {
        errors::client_failure(self.service, self.kind, message)
    }

    /// No usable answer: the SDK's client-side error, or a result too large to carry.
    fn send_failure(&self, e: signed::SendError) -> Failure {
        match e {
            signed::SendError::Failed(message) => self.client_failure(message),
            signed::SendError::TooLarge { bytes } => Failure::new(
                asl::error::names::DATA_LIMIT_EXCEEDED,
                format!(
                    "{}:{} answered {bytes} bytes, more than a task result may hold \
                     (oms reads at most {} bytes)",
                    self.service.sdk_name,
                    self.action,
                    signed::MAX_ANSWER_BYTES
                ),
            ),
        }
    }

    /// Parameters the integration cannot send: named with the field and the rule.
    fn bad_parameters(&self, message: impl std::fmt::Display) -> Failure {
        Failure::runtime(format!(
            "{}:{}: {message}",
            self.service.sdk_name, self.action
        ))
    }
}

/// The service and action of a service integration's call, refusing what oms does
/// not run (`.sync` jobs).
fn service_call(call: &TaskCall) -> Result<(&str, &str), Failure> {
    match &call.target {
        Target::Service {
            service,
            action,
            pattern,
            ..
        } => {
            // Anything but these is a `.sync` form (`.sync`, `.sync:2`).
            if !matches!(
                pattern,
                Pattern::RequestResponse | Pattern::WaitForTaskToken
            ) {
                return Err(Failure::new(
                    asl::error::names::TASK_FAILED,
                    format!(
                        "{}: oms does not run .sync jobs of {service}; use the \
                         request-response or .waitForTaskToken form (docs/integrations.md)",
                        call.resource
                    ),
                ));
            }
            Ok((service.as_str(), action.as_str()))
        }
        _ => Err(Failure::new(
            asl::error::names::TASK_FAILED,
            format!(
                "{} is not an AWS service integration: an aws_endpoint/aws_region rule \
                 in oms.toml applies to arn:aws:states:::SERVICE:ACTION resources only",
                call.resource
            ),
        )),
    }
}

/// The table's service for an integration name and action, or an error saying what
/// oms can call instead.
fn resolve(
    name: &str,
    action: &str,
    resource: &str,
) -> Result<(&'static Service, Kind<'static>), Failure> {
    let unknown = |what: String| Failure::new(asl::error::names::TASK_FAILED, what);
    if let Some(sdk_name) = name.strip_prefix("aws-sdk:") {
        return services::sdk(sdk_name)
            .map(|s| (s, Kind::Sdk))
            .ok_or_else(|| {
                unknown(format!(
                    "{resource}: oms cannot call the service '{sdk_name}' (it calls {}); send \
                 this resource to a builtin or lambda_endpoint rule in oms.toml instead",
                    services::sdk_names()
                ))
            });
    }
    match services::optimized(name) {
        Some((s, o)) if o.actions.contains(&action) => Ok((s, Kind::Optimized(o))),
        Some((s, o)) => Err(unknown(format!(
            "{resource}: the optimized {name} integration has the actions {:?}; use \
             arn:aws:states:::aws-sdk:{}:{action} for others",
            o.actions, s.sdk_name
        ))),
        None => Err(unknown(format!(
            "{resource}: oms has no {name} integration (it calls dynamodb, sqs, sns and \
             events optimized, and aws-sdk:{{{}}}); send this resource to a builtin or \
             lambda_endpoint rule in oms.toml instead",
            services::sdk_names()
        ))),
    }
}

/// AWS's endpoint for a service in a region.
fn default_endpoint(service: &Service, region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{}.{region}.{domain}", service.endpoint_prefix)
}

/// `getItem` is the API's `GetItem`.
fn pascal_case(action: &str) -> String {
    let mut chars = action.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A JSON value as the string a text field carries: strings as they are, anything
/// else serialized (the optimized integrations accept JSON for their text fields).
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the optimized integrations change in the request: SQS's MessageBody, SNS's
/// Message and EventBridge's Detail may be JSON (sent serialized), and each
/// EventBridge entry's Resources gets the state machine and execution ARNs.
fn optimized_request(
    o: &Optimized,
    action: &str,
    payload: &Value,
    execution_arn: &str,
) -> Result<Value, Failure> {
    let mut p = payload.clone();
    let text_field = match (o.name, action) {
        ("sqs", "sendMessage") => Some("MessageBody"),
        ("sns", "publish") => Some("Message"),
        _ => None,
    };
    if let (Some(field), Some(obj)) = (text_field, p.as_object_mut()) {
        if let Some(v) = obj.get_mut(field) {
            *v = Value::String(as_text(v));
        }
    }
    if (o.name, action) == ("events", "putEvents") {
        let entries = p
            .get_mut("Entries")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                Failure::runtime("events:putEvents: Parameters need Entries (an array of events)")
            })?;
        let machine = saga_core::api::state_machine_of(execution_arn);
        for entry in entries {
            event_entry(entry, &machine, execution_arn)?;
        }
    }
    Ok(p)
}

/// One PutEvents entry as the optimized integration sends it.
fn event_entry(entry: &mut Value, machine: &str, execution_arn: &str) -> Result<(), Failure> {
    let obj: &mut Map<String, Value> = entry
        .as_object_mut()
        .ok_or_else(|| Failure::runtime("events:putEvents: each of Entries must be an object"))?;
    if let Some(detail) = obj.get_mut("Detail").filter(|d| d.is_object()) {
        *detail = Value::String(detail.to_string());
    }
    let resources = obj
        .entry("Resources")
        .or_insert_with(|| Value::Array(vec![]));
    let list = resources.as_array_mut().ok_or_else(|| {
        Failure::runtime("events:putEvents: an entry's Resources must be an array of ARNs")
    })?;
    list.push(Value::String(machine.to_string()));
    list.push(Value::String(execution_arn.to_string()));
    Ok(())
}

/// What the optimized integrations change in the result: PutEvents with failed
/// entries fails the task with `EventBridge.FailedEntry`.
fn optimized_result(o: &Optimized, action: &str, result: Value) -> Result<Value, Failure> {
    if (o.name, action) == ("events", "putEvents") {
        let failed = result
            .get("FailedEntryCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if failed > 0 {
            return Err(Failure::new("EventBridge.FailedEntry", result.to_string()));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_pascal_cased_for_the_target_header() {
        assert_eq!(pascal_case("getItem"), "GetItem");
        assert_eq!(pascal_case("startExecution"), "StartExecution");
        assert_eq!(pascal_case(""), "");
    }

    #[test]
    fn default_endpoints_follow_the_region() {
        let ddb = services::sdk("dynamodb").unwrap();
        assert_eq!(
            default_endpoint(ddb, "eu-west-1"),
            "https://dynamodb.eu-west-1.amazonaws.com"
        );
        let events = services::sdk("eventbridge").unwrap();
        assert_eq!(
            default_endpoint(events, "cn-north-1"),
            "https://events.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn unknown_services_and_actions_say_what_to_use() {
        let e = resolve("aws-sdk:glacier", "listVaults", "r").unwrap_err();
        assert!(e
            .cause
            .unwrap()
            .contains("cannot call the service 'glacier'"));
        let e = resolve("dynamodb", "query", "r").unwrap_err();
        assert!(e
            .cause
            .unwrap()
            .contains("arn:aws:states:::aws-sdk:dynamodb:query"));
        let e = resolve("glue", "startJobRun", "r").unwrap_err();
        assert!(e.cause.unwrap().contains("has no glue integration"));
        assert!(resolve("aws-sdk:kinesis", "putRecord", "r").is_ok());
    }

    #[test]
    fn optimized_requests_serialize_json_text_and_tag_events() {
        let (_, sqs) = services::optimized("sqs").unwrap();
        let p = json!({"QueueUrl": "q", "MessageBody": {"a": 1}});
        let out = optimized_request(sqs, "sendMessage", &p, "x").unwrap();
        assert_eq!(out["MessageBody"], json!("{\"a\":1}"));

        let (_, events) = services::optimized("events").unwrap();
        let exec = "arn:aws:states:us-east-1:1:execution:m:e";
        let p = json!({"Entries": [{"Detail": {"k": "v"}, "Source": "s"}]});
        let out = optimized_request(events, "putEvents", &p, exec).unwrap();
        assert_eq!(out["Entries"][0]["Detail"], json!("{\"k\":\"v\"}"));
        assert_eq!(
            out["Entries"][0]["Resources"],
            json!(["arn:aws:states:us-east-1:1:stateMachine:m", exec])
        );
        let bad = optimized_request(events, "putEvents", &json!({}), exec).unwrap_err();
        assert_eq!(bad.error, "States.Runtime");
    }

    #[test]
    fn failed_event_entries_fail_the_task() {
        let (_, events) = services::optimized("events").unwrap();
        let r = json!({"FailedEntryCount": 1, "Entries": [{"ErrorCode": "X"}]});
        let e = optimized_result(events, "putEvents", r).unwrap_err();
        assert_eq!(e.error, "EventBridge.FailedEntry");
        let ok = json!({"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]});
        assert!(optimized_result(events, "putEvents", ok).is_ok());
    }
}
