//! How `oms up` performs Task states: the resource ARN is matched against `oms.toml`'s
//! `[[tasks]]` rules, in order, to an in-process handler, a Lambda Invoke API endpoint
//! (such as `cargo lambda watch`), an AWS service endpoint (crate::integrations), or
//! nothing (activities and callbacks wait for workers and SendTask* calls).

use asl::choice::wildcard_match;
use asl::resource::Target;
use asl::{Failure, TaskCall};
use saga_core::runtime::{default_route, Invoker, Route};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A rule of `oms.toml`: which resources it covers and where they go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRule {
    /// A resource ARN, or for Lambda the function ARN or name; `*` matches any run.
    pub resource: String,
    /// An in-process handler registered by name (see [`builtin`]).
    pub builtin: Option<String>,
    /// The base URL of a server speaking the Lambda Invoke API.
    pub lambda_endpoint: Option<String>,
    /// The base URL of the AWS service (or a server speaking its API) that service
    /// integrations matched by this rule call (docs/integrations.md).
    #[serde(default)]
    pub aws_endpoint: Option<String>,
    /// The region those calls are signed for (default: `[server] region`); alone,
    /// without `aws_endpoint`, it sends them to AWS's endpoint in that region.
    #[serde(default)]
    pub aws_region: Option<String>,
    /// A folder whose subfolders are S3 buckets, for `aws-sdk:s3` Tasks and
    /// ItemReaders with no S3 server (integrations/folder.rs); relative to the
    /// working directory.
    #[serde(default)]
    pub s3_folder: Option<std::path::PathBuf>,
    /// The state machines (ARNs, `*` allowed) whose executions may call these
    /// resources, as a function's resource policy would say; absent, any may.
    #[serde(default)]
    pub state_machines: Option<Vec<String>>,
}

/// A function run in this process in place of a Lambda function: what a `builtin`
/// rule names. (The runtime's [`Invoker`] routes a task to one; the in-memory runner's
/// `asl::runner::TaskHandler` is the synchronous kind, for `oms exec` and tests.)
#[async_trait::async_trait]
pub trait LocalFunction: Send + Sync {
    async fn call(&self, call: &TaskCall) -> Result<Value, Failure>;
    /// Whether a callback token this function is given stays in the process, written
    /// only to the runtime's own database (`Invoker::keeps_token`).
    fn keeps_tokens(&self) -> bool {
        false
    }
}

/// A local function whose writes go to the runtime's own database and which tells a
/// token to no one but through it: the order activities over the embedded order store
/// (`oms up` without `--store`). The steps that hand it tokens need no fsync of their
/// own (issue 16: the pick's was one of the three on an order's path at C=1).
pub struct SharingTheWal(pub Arc<dyn LocalFunction>);

#[async_trait::async_trait]
impl LocalFunction for SharingTheWal {
    async fn call(&self, call: &TaskCall) -> Result<Value, Failure> {
        self.0.call(call).await
    }

    fn keeps_tokens(&self) -> bool {
        true
    }
}

/// The local functions this binary registers.
pub fn builtin(name: &str) -> Option<Arc<dyn LocalFunction>> {
    match name {
        "bench" => Some(Arc::new(BenchStep)),
        _ => None,
    }
}

/// The benchmark saga's steps (../shared/bench/README.md): return
/// `{"step": NAME, "ok": true}`, or fail with `Step.Failed` when the input's `failAt`
/// names the step. NAME is the function name without its `bench-` prefix.
struct BenchStep;

#[async_trait::async_trait]
impl LocalFunction for BenchStep {
    async fn call(&self, call: &TaskCall) -> Result<Value, Failure> {
        let name = oms_orders::function_name(oms_orders::function_of(call));
        let step = name.strip_prefix("bench-").unwrap_or(name);
        if call.payload.get("failAt").and_then(Value::as_str) == Some(step) {
            return Err(Failure::new(
                "Step.Failed",
                format!("{step} failed as the input asked"),
            ));
        }
        Ok(json!({"step": step, "ok": true}))
    }
}

/// The order activities (oms-orders), registered by `oms up` as `activities`.
#[async_trait::async_trait]
impl LocalFunction for oms_orders::ActivityFunctions {
    async fn call(&self, call: &TaskCall) -> Result<Value, Failure> {
        self.invoke(call).await
    }
}

enum Destination {
    Builtin(Arc<dyn LocalFunction>),
    Lambda(String),
    /// AWS service integrations: the endpoint (AWS's own when `None`) and region.
    Aws {
        endpoint: Option<String>,
        region: Option<String>,
    },
    /// S3 buckets as the subfolders of a local folder.
    S3Folder(std::path::PathBuf),
}

/// A rule ready to match: the resource pattern, who may call it, where it goes.
struct Rule {
    resource: String,
    state_machines: Option<Vec<String>>,
    destination: Destination,
}

impl Rule {
    /// Whether an execution of this ARN may call the rule's resources.
    fn admits(&self, execution_arn: &str) -> bool {
        let Some(allowed) = &self.state_machines else {
            return true;
        };
        let machine = saga_core::api::state_machine_of(execution_arn);
        allowed.iter().any(|p| wildcard_match(p, &machine))
    }
}

pub struct ConfiguredInvoker {
    rules: Vec<Rule>,
    http: reqwest::Client,
    aws: crate::integrations::AwsServices,
    /// The region AWS service calls are signed for when their rule names none.
    region: String,
    /// Completes a bare function name (lambda:invoke's FunctionName may be one) into
    /// the ARN rules are written against.
    function_arn_prefix: String,
}

impl ConfiguredInvoker {
    pub fn new(rules: &[TaskRule]) -> Result<ConfiguredInvoker, String> {
        Self::with_handlers(rules, &[])
    }

    /// Like `new`, with more named in-process handlers than [`builtin`] has (handlers
    /// that need state, such as the order activities with their store).
    pub fn with_handlers(
        rules: &[TaskRule],
        handlers: &[(&str, Arc<dyn LocalFunction>)],
    ) -> Result<ConfiguredInvoker, String> {
        let named = |name: &str| {
            handlers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, h)| h.clone())
                .or_else(|| builtin(name))
        };
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let aws = r.aws_endpoint.is_some() || r.aws_region.is_some();
            let dest = match (&r.builtin, &r.lambda_endpoint, aws) {
                _ if r.s3_folder.is_some() => s3_folder_destination(r)?,
                (Some(b), None, false) => Destination::Builtin(named(b).ok_or_else(|| {
                    format!(
                        "tasks rule for {}: no builtin handler named '{b}'",
                        r.resource
                    )
                })?),
                (None, Some(e), false) => Destination::Lambda(e.trim_end_matches('/').to_string()),
                (None, None, true) => aws_destination(r)?,
                _ => {
                    return Err(format!(
                        "tasks rule for {}: give exactly one of builtin, lambda_endpoint, \
                         aws_endpoint/aws_region, or s3_folder",
                        r.resource
                    ))
                }
            };
            out.push(Rule {
                resource: r.resource.clone(),
                state_machines: r.state_machines.clone(),
                destination: dest,
            });
        }
        Ok(ConfiguredInvoker {
            rules: out,
            http: reqwest::Client::new(),
            aws: crate::integrations::AwsServices::default(),
            region: default_region(),
            function_arn_prefix: "arn:aws:lambda:us-east-1:000000000000:function:".into(),
        })
    }

    /// The EventBridge connections HTTP Tasks authorize with (oms.toml's
    /// `[[connections]]`), checked and their `env:` secrets read now.
    pub fn with_connections(
        mut self,
        connections: &[crate::integrations::ConnectionConfig],
    ) -> Result<Self, String> {
        let checked = crate::integrations::Connections::new(connections)?;
        self.aws = crate::integrations::AwsServices::new(checked);
        Ok(self)
    }

    /// The region and account bare function names belong to.
    pub fn in_account(mut self, server: &ServerConfig) -> Self {
        self.function_arn_prefix = format!(
            "arn:aws:lambda:{}:{}:function:",
            server.region, server.account
        );
        self.region = server.region.clone();
        self
    }

    /// The first rule whose resource matches the task's resource, its function, or
    /// (for a bare name) the function's ARN.
    fn rule(&self, call: &TaskCall) -> Option<&Rule> {
        let function = call.function.as_deref();
        let function_arn = function
            .filter(|f| !f.starts_with("arn:"))
            .map(|f| format!("{}{f}", self.function_arn_prefix));
        let keys = [
            Some(call.resource.as_str()),
            function,
            function_arn.as_deref(),
        ];
        self.rules.iter().find(|r| {
            keys.iter()
                .flatten()
                .any(|k| wildcard_match(&r.resource, k))
        })
    }

    async fn invoke_lambda(&self, endpoint: &str, call: &TaskCall) -> Result<Value, Failure> {
        let function = oms_orders::function_of(call);
        let name = oms_orders::function_name(function);
        let url = format!("{endpoint}/2015-03-31/functions/{name}/invocations");
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(call.payload.to_string())
            .send()
            .await
            .map_err(|e| {
                Failure::new(
                    asl::error::names::LAMBDA_SERVICE_EXCEPTION,
                    format!("cannot reach the Lambda endpoint {url}: {e}"),
                )
            })?;
        let status = response.status();
        let function_error = response.headers().get("x-amz-function-error").is_some();
        let body = response.text().await.map_err(|e| {
            Failure::new(
                asl::error::names::LAMBDA_SERVICE_EXCEPTION,
                format!("reading the response of {url}: {e}"),
            )
        })?;
        if status.as_u16() == 404 {
            return Err(oms_orders::function_not_found(function));
        }
        // `cargo lambda watch` answers a function error with 500 and the error payload,
        // where AWS answers 200 with X-Amz-Function-Error: both are the function's error.
        let error_payload = status.as_u16() == 500
            && serde_json::from_str::<Value>(&body)
                .is_ok_and(|v| v.get("errorType").and_then(Value::as_str).is_some());
        if !status.is_success() && !error_payload {
            return Err(Failure::new(
                asl::error::names::LAMBDA_SERVICE_EXCEPTION,
                format!("{url} answered {status}: {body}"),
            ));
        }
        if function_error || error_payload {
            // The body is the function's error payload; its errorType names the error.
            let error = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("errorType")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "Lambda.Unknown".to_string());
            return Err(Failure::new(error, body));
        }
        serde_json::from_str(&body).or_else(|_| Ok(Value::String(body)))
    }
}

#[async_trait::async_trait]
impl Invoker for ConfiguredInvoker {
    fn route(&self, call: &TaskCall) -> Route {
        match (default_route(call), self.rule(call)) {
            (Route::InvokeThenAwaitToken, None) => Route::AwaitToken,
            (route, _) => route,
        }
    }

    fn keeps_token(&self, call: &TaskCall) -> bool {
        match self.rule(call).map(|r| &r.destination) {
            Some(Destination::Builtin(h)) => h.keeps_tokens(),
            _ => false,
        }
    }

    async fn invoke(&self, execution_arn: &str, call: &TaskCall) -> Result<Value, Failure> {
        let rule = self.rule(call);
        if let Some(r) = rule.filter(|r| !r.admits(execution_arn)) {
            return Err(not_allowed(execution_arn, call, r));
        }
        // An HTTP Task calls its ApiEndpoint unless a builtin or Lambda rule takes it
        // (an aws_endpoint rule's region still names the region it runs in).
        let http_task = crate::integrations::is_http_task(call);
        // The remote calls' futures are boxed where they are taken: inline, the AWS
        // SDK's and reqwest's made this future about 12 KB, copied into its box on
        // every task, builtin ones too (1.2% of an order's instructions, callgrind).
        match rule.map(|r| &r.destination) {
            Some(Destination::Builtin(h)) => h.call(call).await,
            Some(Destination::Lambda(endpoint)) => {
                Box::pin(self.invoke_lambda(endpoint, call)).await
            }
            Some(Destination::Aws { region, .. }) if http_task => {
                let region = region.as_deref().unwrap_or(&self.region);
                Box::pin(self.aws.http_invoke(region, call)).await
            }
            None if http_task => Box::pin(self.aws.http_invoke(&self.region, call)).await,
            Some(Destination::Aws { endpoint, region }) => {
                let region = region.as_deref().unwrap_or(&self.region);
                Box::pin(
                    self.aws
                        .call(endpoint.as_deref(), region, execution_arn, call),
                )
                .await
            }
            Some(Destination::S3Folder(root)) => {
                let (root, call) = (root.clone(), call.clone());
                tokio::task::spawn_blocking(move || crate::integrations::folder::call(&root, &call))
                    .await
                    .unwrap_or_else(|e| {
                        Err(Failure::new(
                            asl::error::names::TASK_FAILED,
                            format!("the s3_folder call stopped: {e}"),
                        ))
                    })
            }
            None => Err(no_rule(call)),
        }
    }

    /// TestState performs HTTP Tasks (as AWS's does), unless a rule takes them.
    async fn test_call(
        &self,
        call: &TaskCall,
        reveal_secrets: bool,
    ) -> Option<saga_core::runtime::TestCall> {
        if !crate::integrations::is_http_task(call) {
            return None;
        }
        let region = match self.rule(call).map(|r| &r.destination) {
            None => &self.region,
            Some(Destination::Aws { region, .. }) => region.as_ref().unwrap_or(&self.region),
            Some(_) => return None,
        };
        Some(self.aws.http_test_call(region, call, reveal_secrets).await)
    }
}

/// An `s3_folder` rule: alone on its rule, and a folder that exists.
fn s3_folder_destination(r: &TaskRule) -> Result<Destination, String> {
    let others = r.builtin.is_some()
        || r.lambda_endpoint.is_some()
        || r.aws_endpoint.is_some()
        || r.aws_region.is_some();
    if others {
        return Err(format!(
            "tasks rule for {}: s3_folder cannot be given with builtin, lambda_endpoint, \
             aws_endpoint or aws_region",
            r.resource
        ));
    }
    let folder = r.s3_folder.clone().unwrap_or_default();
    if !folder.is_dir() {
        return Err(format!(
            "tasks rule for {}: s3_folder = \"{}\" is not a folder (create it, with a \
             subfolder per bucket)",
            r.resource,
            folder.display()
        ));
    }
    Ok(Destination::S3Folder(folder))
}

/// The failure of a task no rule covers, saying which rule to add.
fn no_rule(call: &TaskCall) -> Failure {
    let what = oms_orders::function_of(call);
    match &call.target {
        Target::LambdaFunction { .. } | Target::LambdaInvoke { .. } => Failure::new(
            asl::error::names::LAMBDA_RESOURCE_NOT_FOUND,
            format!("No handler for {what}: add a [[tasks]] rule for it to oms.toml"),
        ),
        Target::Service { service, .. } => Failure::new(
            asl::error::names::TASK_FAILED,
            format!(
                "No handler for {what}: add a [[tasks]] rule for it to oms.toml, such as \
                 resource = \"arn:aws:states:::{service}:*\" with aws_endpoint = \"URL\" \
                 (or aws_region = \"REGION\" for AWS itself): docs/integrations.md"
            ),
        ),
        _ => Failure::new(
            asl::error::names::TASK_FAILED,
            format!("No handler for {what}: add a [[tasks]] rule for it to oms.toml"),
        ),
    }
}

/// An AWS service rule's destination, its endpoint checked at start.
fn aws_destination(r: &TaskRule) -> Result<Destination, String> {
    let endpoint = match &r.aws_endpoint {
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
            Some(e.trim_end_matches('/').to_string())
        }
        Some(e) => {
            return Err(format!(
                "tasks rule for {}: aws_endpoint = \"{e}\" must be an http:// or https:// URL",
                r.resource
            ))
        }
        None => None,
    };
    if let Some(region) = r.aws_region.as_deref() {
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "tasks rule for {}: aws_region = \"{region}\" is not a region name (such as \
                 us-east-1)",
                r.resource
            ));
        }
    }
    Ok(Destination::Aws {
        endpoint,
        region: r.aws_region.clone(),
    })
}

/// What AWS answers when a state machine's role may not invoke a function (Lambda's
/// AccessDeniedException, surfaced as Lambda.AWSLambdaException), naming the rule.
fn not_allowed(execution_arn: &str, call: &TaskCall, rule: &Rule) -> Failure {
    let what = oms_orders::function_of(call);
    Failure::new(
        "Lambda.AWSLambdaException",
        format!(
            "{} is not authorized to invoke {what}: oms.toml's tasks rule for '{}' admits only \
             the state machines {:?} (Service: AWSLambda; Status Code: 403; Error Code: \
             AccessDeniedException)",
            saga_core::api::state_machine_of(execution_arn),
            rule.resource,
            rule.state_machines.as_deref().unwrap_or_default(),
        ),
    )
}

/// `oms.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tasks: Vec<TaskRule>,
    /// The EventBridge connections HTTP Tasks name (docs/oms-toml.md).
    #[serde(default)]
    pub connections: Vec<crate::integrations::ConnectionConfig>,
    /// The credentials `oms up` requires off loopback (docs/security.md); without
    /// them, it generates its own into the data dir.
    #[serde(default)]
    pub auth: Option<crate::auth::Credentials>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub saga: SagaConfig,
}

/// `[saga]`: the order saga `oms up` registers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaConfig {
    /// Its definition by query language (docs/oms-toml.md); default JSONPath.
    pub query_language: Option<oms_orders::SagaLanguage>,
}

/// `[storage]`: the embedded databases.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// A file holding the databases' key (docs/security.md, encryption at rest).
    pub key_file: Option<std::path::PathBuf>,
}

/// `[http]`: how the HTTP front answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Host names a loopback server answers besides localhost, 127.0.0.1 and [::1]
    /// (`name` for any port, `name:port` for one): docs/security.md, DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_account")]
    pub account: String,
    /// Closed executions are deleted this many days after they stop (AWS: 90).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            region: default_region(),
            account: default_account(),
            retention_days: default_retention_days(),
        }
    }
}

/// The longest retention accepted: past it, dates before the period overflow.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl ServerConfig {
    /// `retention_days` as a period, checked.
    pub fn retention(&self) -> Result<chrono::Duration, String> {
        retention_from_seconds(u64::from(self.retention_days) * 86_400).map_err(|_| {
            format!(
                "[server] retention_days = {}: give a whole number of days from 1 to {MAX_RETENTION_DAYS}",
                self.retention_days
            )
        })
    }
}

/// A retention of `seconds` (at least 1, at most [`MAX_RETENTION_DAYS`]).
pub fn retention_from_seconds(seconds: u64) -> Result<chrono::Duration, String> {
    let max_s = u64::from(MAX_RETENTION_DAYS) * 86_400;
    if !(1..=max_s).contains(&seconds) {
        return Err(format!("a retention from 1 to {max_s} seconds"));
    }
    // In range, so the conversion cannot fail.
    Ok(chrono::Duration::seconds(seconds as i64))
}

fn default_retention_days() -> u32 {
    saga_core::retention::DEFAULT_RETENTION_DAYS
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_account() -> String {
    "000000000000".into()
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
