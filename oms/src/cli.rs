//! The order CLI: a client of a running `oms up` (or any server with the same APIs),
//! through the Orders API and, for executions, the Step Functions API.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum OrdersCmd {
    /// Orders, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        sku: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One order: status, amounts, shipments, its ledger and where it stopped.
    Show { order_id: String },
    /// Cancel a running order (its saga compensates what was done).
    Cancel { order_id: String },
    /// Retry a failed order (redrive); --preview shows what would run again.
    Retry {
        order_id: String,
        #[arg(long)]
        preview: bool,
    },
}

#[derive(Subcommand)]
pub enum ExecutionsCmd {
    /// The order saga's executions.
    List {
        /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE.
        #[arg(long)]
        status: Option<String>,
    },
    /// One execution's history, event by event.
    Show { execution_arn: String },
}

#[derive(Subcommand)]
pub enum FaultsCmd {
    /// Replace the fault plans: JSON text, or a file holding it.
    Set { plans: String },
    /// Clear every fault plan.
    Clear,
    /// The fault plans in force.
    Show,
}

/// The order commands: requests to a running server's Orders and Step Functions APIs
/// (flattened into `oms`'s subcommands).
#[derive(Subcommand)]
pub enum Request {
    /// Submit an order (a JSON file, `-` for stdin, or the JSON itself).
    Submit { order: String },
    /// Orders: list, show, cancel, retry.
    #[command(subcommand)]
    Orders(OrdersCmd),
    /// The order saga's executions: list, show (the history).
    #[command(subcommand)]
    Executions(ExecutionsCmd),
    /// Fault injection of the activities: set, clear, show.
    #[command(subcommand)]
    Faults(FaultsCmd),
}

/// How the CLI reaches the APIs: over HTTP to a running `oms up`, or in this process
/// to the same routes built over a deployed stack (`--backend aws`), so that both
/// backends run the same client and the same server code.
pub enum Target {
    /// A server's endpoint, and its bearer token if it requires one.
    Http(String, Option<String>),
    Aws(crate::aws::AwsTarget),
}

#[derive(Clone)]
enum Transport {
    Http {
        http: reqwest::Client,
        endpoint: String,
    },
    InProcess(axum::Router),
}

#[derive(Clone)]
pub(crate) struct Client {
    transport: Transport,
}

/// An HTTP client that sends `token` as a bearer token with every request.
fn http_client(token: Option<&str>) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "--token: not a valid header value".to_string())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())
}

impl Client {
    async fn connect(target: Target) -> Result<Client, String> {
        let transport = match target {
            Target::Http(endpoint, token) => Transport::Http {
                http: http_client(token.as_deref())?,
                endpoint: endpoint.trim_end_matches('/').to_string(),
            },
            Target::Aws(aws) => {
                let (sfn, orders) = crate::aws::orders(&aws).await?;
                Transport::InProcess(crate::server::app(sfn, Arc::new(orders)))
            }
        };
        Ok(Client { transport })
    }

    /// One request: its status and body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        match &self.transport {
            Transport::Http { http, endpoint } => {
                let url = format!("{endpoint}{path}");
                let mut req = http.request(method, &url);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                if let Some(b) = body {
                    req = req.body(b);
                }
                let resp = req.send().await.map_err(|e| {
                    format!("cannot reach {url}: {e} (is `oms up` running? --endpoint)")
                })?;
                let status = resp.status().as_u16();
                Ok((status, resp.text().await.map_err(|e| e.to_string())?))
            }
            Transport::InProcess(router) => {
                use tower::ServiceExt;
                let mut req = axum::http::Request::builder().method(method).uri(path);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let req = req
                    .body(axum::body::Body::from(body.unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
                let resp = router
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let bytes = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
            }
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Value), String> {
        let headers = match body {
            Some(_) => vec![("content-type", "application/json".to_string())],
            None => vec![],
        };
        let (status, text) = self.send(method, path, &headers, body).await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// A call that must succeed; an API error becomes the message to print.
    pub(crate) async fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method, path, body).await?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let mut msg = format!(
            "{} ({status}): {}",
            v["code"].as_str().unwrap_or("error"),
            v["message"].as_str().unwrap_or(&v.to_string())
        );
        if let Some(fields) = v["fields"].as_array() {
            for f in fields {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    f["field"].as_str().unwrap_or_default(),
                    f["rule"].as_str().unwrap_or_default()
                ));
            }
        }
        Err(msg)
    }

    async fn sfn(&self, op: &str, body: Value) -> Result<Value, String> {
        let headers = [
            ("x-amz-target", format!("AWSStepFunctions.{op}")),
            ("content-type", "application/x-amz-json-1.0".to_string()),
        ];
        let (status, text) = self
            .send("POST", "/", &headers, Some(body.to_string()))
            .await?;
        let ok = (200..300).contains(&status);
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{op}: the answer is not JSON: {e}"))?;
        if ok {
            Ok(v)
        } else {
            Err(format!(
                "{op}: {}: {}",
                v["__type"].as_str().unwrap_or("error"),
                v["message"].as_str().unwrap_or_default()
            ))
        }
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn money(cents: &Value) -> String {
    cents
        .as_i64()
        .map(|c| format!("{}.{:02}", c / 100, c % 100))
        .unwrap_or_else(|| "-".into())
}

fn read_input(source: &str) -> Result<String, String> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return Ok(s);
    }
    if source.trim_start().starts_with('{') {
        return Ok(source.to_string());
    }
    std::fs::read_to_string(source).map_err(|e| format!("cannot read {source}: {e}"))
}

/// Runs `f` with a client of `target` on a runtime of its own.
fn with_client<F, Fut>(target: Target, f: F) -> Result<ExitCode, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, String>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move { f(Client::connect(target).await?).await })
}

/// `oms load`, through the same client as the order commands.
pub fn load(
    target: Target,
    output: Output,
    args: crate::load::LoadArgs,
) -> Result<ExitCode, String> {
    with_client(target, |client| crate::load::load(client, args, output))
}

/// An order command: one request (or a few), printed as a table or as JSON.
pub fn run(target: Target, output: Output, request: Request) -> Result<ExitCode, String> {
    with_client(target, |client| async move {
        match request {
            Request::Submit { order } => submit(&client, &order).await?,
            Request::Orders(OrdersCmd::List {
                status,
                customer,
                sku,
                limit,
            }) => list_orders(&client, output, status, customer, sku, limit).await?,
            Request::Orders(OrdersCmd::Show { order_id }) => {
                show_order(&client, output, &order_id).await?
            }
            Request::Orders(OrdersCmd::Cancel { order_id }) => {
                print(
                    &client
                        .ok("POST", &format!("/orders/{order_id}/cancel"), None)
                        .await?,
                );
            }
            Request::Orders(OrdersCmd::Retry { order_id, preview }) => {
                let method = if preview { "GET" } else { "POST" };
                print(
                    &client
                        .ok(method, &format!("/orders/{order_id}/retry"), None)
                        .await?,
                );
            }
            Request::Executions(ExecutionsCmd::List { status }) => {
                list_executions(&client, output, status).await?
            }
            Request::Executions(ExecutionsCmd::Show { execution_arn }) => {
                show_execution(&client, output, &execution_arn).await?
            }
            Request::Faults(FaultsCmd::Set { plans }) => {
                print(
                    &client
                        .ok("PUT", "/admin/faults", Some(read_input(&plans)?))
                        .await?,
                );
            }
            Request::Faults(FaultsCmd::Clear) => {
                client.ok("DELETE", "/admin/faults", None).await?;
                println!("fault plans cleared");
            }
            Request::Faults(FaultsCmd::Show) => {
                print(&client.ok("GET", "/admin/faults", None).await?)
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn submit(client: &Client, source: &str) -> Result<(), String> {
    let body = read_input(source)?;
    serde_json::from_str::<Value>(&body).map_err(|e| format!("{source}: not JSON: {e}"))?;
    print(&client.ok("POST", "/orders", Some(body)).await?);
    Ok(())
}

async fn list_orders(
    client: &Client,
    output: Output,
    status: Option<String>,
    customer: Option<String>,
    sku: Option<String>,
    limit: usize,
) -> Result<(), String> {
    let mut q = vec![format!("limit={limit}")];
    for (k, v) in [("status", status), ("customer_id", customer), ("sku", sku)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    let v = client
        .ok("GET", &format!("/orders?{}", q.join("&")), None)
        .await?;
    if output == Output::Json {
        print(&v);
    } else {
        let rows: Vec<Vec<String>> = v["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                vec![
                    text(&o["order_id"]),
                    text(&o["status"]),
                    text(&o["customer_id"]),
                    money(&o["total_cents"]),
                    text(&o["created_at"]),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["ORDER", "STATUS", "CUSTOMER", "TOTAL", "CREATED"], &rows)
        );
    }
    Ok(())
}

async fn show_order(client: &Client, output: Output, order_id: &str) -> Result<(), String> {
    let v = client
        .ok("GET", &format!("/orders/{order_id}"), None)
        .await?;
    if output == Output::Json {
        print(&v);
    } else {
        println!("order     {}  {}", text(&v["order_id"]), text(&v["status"]));
        println!(
            "amounts   total {}  charged {}  refunded {}",
            money(&v["total_cents"]),
            money(&v["charged_cents"]),
            money(&v["refunded_cents"])
        );
        println!(
            "execution {} ({})",
            text(&v["execution_arn"]),
            text(&v["execution_status"])
        );
        if !v["failure"].is_null() {
            println!(
                "failure   at {}: {} {}",
                text(&v["failure"]["step"]),
                text(&v["failure"]["error"]),
                text(&v["failure"]["cause"])
            );
        }
        let rows: Vec<Vec<String>> = v["shipments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                vec![
                    text(&s["shipment_id"]),
                    text(&s["warehouse_id"]),
                    text(&s["status"]),
                    text(&s["tracking_number"]),
                ]
            })
            .collect();
        println!(
            "\n{}",
            table(&["SHIPMENT", "WAREHOUSE", "STATUS", "TRACKING"], &rows)
        );
        let rows: Vec<Vec<String>> = v["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                vec![
                    text(&s["step"]),
                    text(&s["shipment_id"]),
                    text(&s["status"]),
                    text(&s["error"]["name"]),
                    text(&s["updated_at"]),
                ]
            })
            .collect();
        println!(
            "\n{}",
            table(&["STEP", "SHIPMENT", "STATUS", "ERROR", "AT"], &rows)
        );
    }
    Ok(())
}

async fn list_executions(
    client: &Client,
    output: Output,
    status: Option<String>,
) -> Result<(), String> {
    let machines = client.sfn("ListStateMachines", json!({})).await?;
    let arn = machines["stateMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "order-saga")
        .and_then(|m| m["stateMachineArn"].as_str())
        .ok_or("the server has no order-saga state machine")?
        .to_string();
    let mut body = json!({"stateMachineArn": arn, "maxResults": 1000});
    if let Some(s) = status {
        body["statusFilter"] = json!(s);
    }
    let v = client.sfn("ListExecutions", body).await?;
    if output == Output::Json {
        print(&v);
    } else {
        let rows: Vec<Vec<String>> = v["executions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                vec![
                    text(&e["name"]),
                    text(&e["status"]),
                    text(&e["executionArn"]),
                ]
            })
            .collect();
        println!("{}", table(&["NAME", "STATUS", "ARN"], &rows));
    }
    Ok(())
}

async fn show_execution(
    client: &Client,
    output: Output,
    execution_arn: &str,
) -> Result<(), String> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"executionArn": execution_arn, "maxResults": 1000});
        if let Some(t) = token.take() {
            body["nextToken"] = json!(t);
        }
        let page = client.sfn("GetExecutionHistory", body).await?;
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    if output == Output::Json {
        print(&json!({"events": events}));
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let details = e
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.ends_with("EventDetails")))
                    .map(|(_, d)| d.clone())
                    .unwrap_or(Value::Null);
                let what = details["name"]
                    .as_str()
                    .or(details["resource"].as_str())
                    .or(details["error"].as_str())
                    .unwrap_or("")
                    .to_string();
                vec![text(&e["id"]), text(&e["type"]), what]
            })
            .collect();
        println!("{}", table(&["ID", "TYPE", "STATE / DETAIL"], &rows));
    }
    Ok(())
}
