//! The order CLI: a client of a running `oms up` (or any server with the same APIs),
//! through the Orders API and, for executions, the Step Functions API.

use crate::client::{text, with_client, Client, Output, Target};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::Read;
use std::process::ExitCode;

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
    /// Amend an order before it is picked: its address, quantities, lines added or
    /// removed (PATCH /orders/{id}; docs/saga.md (Amending)).
    Amend(AmendArgs),
}

#[derive(clap::Args)]
pub struct AmendArgs {
    order_id: String,
    /// The order's version the change is based on (`oms orders show --output json`);
    /// without it, the version the order is at now.
    #[arg(long)]
    version: Option<u64>,
    /// Set a line's quantity: SKU=QTY (a new SKU adds a line, QTY 0 removes it);
    /// repeat for several lines. Lines not named are kept.
    #[arg(long = "line", value_name = "SKU=QTY")]
    lines: Vec<String>,
    #[arg(long)]
    ship_to_name: Option<String>,
    #[arg(long)]
    ship_to_line1: Option<String>,
    #[arg(long)]
    ship_to_city: Option<String>,
    #[arg(long)]
    ship_to_postal_code: Option<String>,
    #[arg(long)]
    ship_to_country: Option<String>,
    /// Who amends (recorded in the order's history; the X-Oms-Associate header).
    #[arg(long)]
    by: Option<String>,
}

#[derive(Subcommand)]
pub enum ExecutionsCmd {
    /// The order saga's executions.
    List {
        /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE.
        #[arg(long)]
        status: Option<String>,
    },
    /// One execution's history, event by event: an execution ARN, or an order id
    /// (its saga's execution).
    Show {
        #[arg(value_name = "EXECUTION_ARN|ORDER_ID")]
        execution_arn: String,
    },
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
    /// Load a catalog, warehouses or stock feed (CSV or NDJSON) through POST /imports.
    Import(crate::import_cli::ImportArgs),
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

/// An order command: one request (or a few), printed as a table or as JSON.
pub fn run(target: Target, output: Output, request: Request) -> Result<ExitCode, String> {
    with_client(target, |client| async move {
        match request {
            Request::Import(args) => return crate::import_cli::import(&client, output, args).await,
            Request::Submit { order } => submit(&client, output, &order).await?,
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
                let v = client
                    .ok("POST", &format!("/orders/{order_id}/cancel"), None)
                    .await?;
                print_as(output, &v, order_line);
            }
            Request::Orders(OrdersCmd::Retry { order_id, preview }) => {
                let method = if preview { "GET" } else { "POST" };
                let v = client
                    .ok(method, &format!("/orders/{order_id}/retry"), None)
                    .await?;
                print_as(output, &v, retry_lines);
            }
            Request::Orders(OrdersCmd::Amend(args)) => amend(&client, output, args).await?,
            Request::Executions(ExecutionsCmd::List { status }) => {
                list_executions(&client, output, status).await?
            }
            Request::Executions(ExecutionsCmd::Show { execution_arn }) => {
                let arn = execution_of(&client, &execution_arn).await?;
                show_execution(&client, output, &arn).await?
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
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

async fn submit(client: &Client, output: Output, source: &str) -> Result<(), String> {
    let body = read_input(source)?;
    serde_json::from_str::<Value>(&body).map_err(|e| format!("{source}: not JSON: {e}"))?;
    let v = client.ok("POST", "/orders", Some(body)).await?;
    print_as(output, &v, order_line);
    Ok(())
}

/// `oms orders amend`: the PATCH body built from the order as it is now and the flags.
async fn amend(client: &Client, output: Output, args: AmendArgs) -> Result<(), String> {
    let path = format!("/orders/{}", args.order_id);
    let current = client.ok("GET", &path, None).await?;
    let mut body = json!({"version": args.version.or(current["version"].as_u64())});
    let address = [
        ("name", &args.ship_to_name),
        ("line1", &args.ship_to_line1),
        ("city", &args.ship_to_city),
        ("postal_code", &args.ship_to_postal_code),
        ("country", &args.ship_to_country),
    ];
    if address.iter().any(|(_, v)| v.is_some()) {
        let mut ship_to = current["ship_to"].clone();
        for (field, value) in address {
            if let Some(v) = value {
                ship_to[field] = json!(v);
            }
        }
        body["ship_to"] = ship_to;
    }
    if !args.lines.is_empty() {
        body["lines"] = Value::Array(amended_lines(&current["lines"], &args.lines)?);
    }
    let mut headers = Vec::new();
    if let Some(by) = &args.by {
        headers.push((oms_orders::ASSOCIATE_HEADER, by.clone()));
    }
    let v = client
        .ok_with("PATCH", &path, &headers, Some(body.to_string()))
        .await?;
    print_as(output, &v, |v| {
        format!(
            "order {}  amendment {}  {}",
            text(&v["order_id"]),
            text(&v["amendment_id"]),
            text(&v["status"])
        )
    });
    Ok(())
}

/// The order's lines with each `SKU=QTY` applied (0 removes the line).
fn amended_lines(current: &Value, changes: &[String]) -> Result<Vec<Value>, String> {
    let mut lines: Vec<(String, i64)> = current
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (text(&l["sku"]), l["quantity"].as_i64().unwrap_or(0)))
        .collect();
    for change in changes {
        let parsed = change
            .split_once('=')
            .and_then(|(sku, q)| Some((sku.trim(), q.trim().parse::<i64>().ok()?)));
        let Some((sku, quantity)) = parsed.filter(|(sku, q)| !sku.is_empty() && *q >= 0) else {
            return Err(format!(
                "--line {change}: SKU=QTY, a SKU and a whole number of units (0 removes the line)"
            ));
        };
        match lines.iter_mut().find(|(s, _)| s == sku) {
            Some(line) => line.1 = quantity,
            None => lines.push((sku.to_string(), quantity)),
        }
    }
    Ok(lines
        .into_iter()
        .filter(|(_, q)| *q > 0)
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect())
}

/// `v` as JSON, or for people as `table` words it.
fn print_as(output: Output, v: &Value, table: fn(&Value) -> String) {
    match output {
        Output::Json => print(v),
        Output::Table => println!("{}", table(v)),
    }
}

/// An order's id, status and execution: what submit and cancel answer.
fn order_line(v: &Value) -> String {
    let mut line = format!("order {}  {}", text(&v["order_id"]), text(&v["status"]));
    if let Some(arn) = v["execution_arn"].as_str() {
        line.push_str(&format!("\nexecution {arn}"));
    }
    line
}

/// What a retry runs again (or, previewed, would), and what it keeps.
fn retry_lines(v: &Value) -> String {
    let list = |k: &str| {
        let names: Vec<String> = v[k].as_array().into_iter().flatten().map(text).collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut out = format!("order {}", text(&v["order_id"]));
    if let Some(reason) = v["reason"].as_str() {
        out.push_str(&format!("  not retryable: {reason}"));
    }
    out.push_str(&format!("\nruns again  {}", list("will_run_again")));
    if v.get("kept").is_some() {
        out.push_str(&format!("\nkept        {}", list("kept")));
    }
    out
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
        // What the order allows now, as the API decides it (`oms orders cancel|retry`).
        let actions: Vec<String> = v["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        println!(
            "actions   {}",
            if actions.is_empty() {
                "none".to_string()
            } else {
                actions.join(", ")
            }
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

/// `id` itself when it is an ARN, else the execution of the order it names.
async fn execution_of(client: &Client, id: &str) -> Result<String, String> {
    if id.starts_with("arn:") {
        return Ok(id.to_string());
    }
    let order = client.ok("GET", &format!("/orders/{id}"), None).await?;
    match order["execution_arn"].as_str() {
        Some(arn) => Ok(arn.to_string()),
        None => Err(format!(
            "order {id} has no execution to show (its history may have been pruned)"
        )),
    }
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
