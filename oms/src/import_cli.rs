//! `oms import catalog|warehouses|stock FILE`: the feed sent to a running server's
//! `POST /imports` (read as it is sent, never held whole), with a progress bar on a
//! terminal, and its report printed. The rules are `activities::feeds`'s.

use crate::client::{text, Client, Output};
use crate::imports_http::{CSV, NDJSON};
use activities::feeds::{Format, Kind};
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct ImportArgs {
    /// What the file holds: catalog, warehouses or stock (load stock last: its rows
    /// must name known SKUs and warehouses).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(Kind::NAMES))]
    pub kind: String,
    /// A .csv (with a header row) or .ndjson / .jsonl file. Stock CSV headers:
    /// `warehouse_id,sku,on_hand` (absolute counts) or `warehouse_id,sku,delta`.
    pub file: PathBuf,
    /// The feed's id: the same id again applies nothing. By default
    /// `<kind>-<sha256 of the file>`, so the same file twice is one feed.
    #[arg(long)]
    pub feed_id: Option<String>,
}

/// Sends the feed; exit 0 when it applied (or had been), 1 when it had bad rows
/// (nothing applied) or rows refused because they would break a reservation.
pub async fn import(client: &Client, output: Output, args: ImportArgs) -> Result<ExitCode, String> {
    let name = args.file.to_string_lossy().to_string();
    let format = Format::of_path(&name).ok_or_else(|| {
        format!("{name}: name a .csv, .ndjson or .jsonl file (the format is its extension)")
    })?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("cannot read {name}: {e}"))?
        .len();
    let mut path = format!("/imports?kind={}", args.kind);
    if let Some(id) = &args.feed_id {
        path.push_str(&format!(
            "&feed_id={}",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        ));
    }
    let content_type = match format {
        Format::Csv => CSV,
        Format::Ndjson => NDJSON,
    };
    let headers = [
        ("content-type", content_type.to_string()),
        ("accept", NDJSON.to_string()),
    ];
    let bar = bar(size);
    let sent = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (bar, sent) = (bar.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(sent.load(Ordering::Relaxed));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let answer = client.upload(&path, &headers, &args.file, sent).await;
    ticker.abort();
    let (status, mut chunks) = answer?;
    let (status, body) = if status == 200 {
        follow(&mut chunks, &bar, size).await?
    } else {
        let mut text = Vec::new();
        while let Some(c) = chunks.next().await {
            text.extend_from_slice(&c?);
        }
        (status, serde_json::from_slice(&text).unwrap_or(Value::Null))
    };
    bar.finish_and_clear();
    report(output, status, &body)
}

/// A bar drawn on stderr when it is a terminal, and nothing otherwise.
fn bar(size: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(size), target);
    bar.set_style(
        ProgressStyle::with_template("{msg:9} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("sending");
    bar
}

/// Reads the server's progress lines into the bar, and returns its answer.
async fn follow(
    chunks: &mut crate::client::Chunks,
    bar: &ProgressBar,
    size: u64,
) -> Result<(u16, Value), String> {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let v: Value =
                serde_json::from_slice(&line).map_err(|e| format!("the server's progress: {e}"))?;
            if let Some(status) = v["status"].as_u64() {
                return Ok((status as u16, v["body"].clone()));
            }
            let p = &v["progress"];
            if p["checked"].as_bool() == Some(true) {
                bar.set_message("applying");
                bar.set_length(p["rows_checked"].as_u64().unwrap_or(0));
                bar.set_position(p["rows_applied"].as_u64().unwrap_or(0));
            } else {
                bar.set_message("checking");
                bar.set_length(size);
                bar.set_position(p["bytes_checked"].as_u64().unwrap_or(0));
            }
        }
    }
    Err("the server ended its answer before the import's result".into())
}

fn report(output: Output, status: u16, v: &Value) -> Result<ExitCode, String> {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(v).expect("JSON values serialize")
        );
    }
    if status == 422 || (200..300).contains(&status) {
        if output == Output::Table {
            println!("{}", table(v));
        }
        let clean = (200..300).contains(&status) && v["refused"].as_u64() == Some(0);
        return Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    Err(format!(
        "{} ({status}): {}",
        v["code"].as_str().unwrap_or("error"),
        v["message"].as_str().unwrap_or(&v.to_string())
    ))
}

/// The report for people: a line, then each bad or refused row.
fn table(v: &Value) -> String {
    let mut out = match v["status"].as_str() {
        Some("invalid") => format!(
            "feed {}  invalid: {} of {} rows break a rule; nothing applied",
            text(&v["feed_id"]),
            text(&v["error_count"]),
            text(&v["rows"])
        ),
        _ => format!(
            "feed {}  {}: {} rows, {} applied, {} unchanged, {} refused",
            text(&v["feed_id"]),
            text(&v["status"]),
            text(&v["rows"]),
            text(&v["applied"]),
            text(&v["unchanged"]),
            text(&v["refused"])
        ),
    };
    for e in v["errors"]
        .as_array()
        .into_iter()
        .chain(v["refusals"].as_array())
        .flatten()
    {
        out.push_str(&format!(
            "\n  line {}: {}: {}",
            text(&e["line"]),
            text(&e["field"]),
            text(&e["rule"])
        ));
    }
    let listed = v["errors"].as_array().map_or(0, Vec::len) as u64;
    if v["error_count"].as_u64().is_some_and(|n| n > listed) {
        out.push_str("\n  (more bad rows: the report lists the first ones)");
    }
    out
}
