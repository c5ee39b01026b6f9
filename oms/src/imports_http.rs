//! `POST /imports`: a feed file in the body (CSV or NDJSON, by Content-Type), applied by
//! `activities::feeds::import`, the same code as `oms import` (which calls this route).
//!
//! The body is spooled to a temporary file (TMPDIR) as it arrives, because a feed is
//! read twice (checked whole, then applied) and may be far larger than memory. The
//! import runs in a task of its own: a client that hangs up does not stop a feed
//! half-way. With `Accept: application/x-ndjson` the answer is a stream of progress
//! lines and then `{"status", "body"}`, the answer a plain request gets (the CLI draws
//! its progress bar from it).

use activities::errors::ErrorKind;
use activities::feeds::{import, FeedError, Format, Kind, Progress, Report};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use oms_orders::{code, Orders, Problem};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The largest feed accepted: about 30 million stock rows.
pub const MAX_FEED_BYTES: u64 = 1 << 30;
/// The media types of the two formats.
pub const CSV: &str = "text/csv";
pub const NDJSON: &str = "application/x-ndjson";
/// How often a progress line is sent.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub async fn post_imports(
    State(o): State<Arc<Orders>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (kind, format) = match request_of(&q, &headers) {
        Ok(r) => r,
        Err(p) => return problem(&p),
    };
    let spool = match spool(body).await {
        Ok(s) => s,
        Err(p) => return problem(&p),
    };
    let progress = Arc::new(Progress::default());
    let (store, watch) = (o.ctx.store.clone(), progress.clone());
    let feed_id = q.get("feed_id").cloned();
    let task = tokio::spawn(async move {
        let result = import(store, kind, format, &spool, feed_id.as_deref(), watch).await;
        drop(spool); // the file is removed once the feed is done with it
        outcome(result)
    });
    if wants_stream(&headers) {
        stream(task, progress)
    } else {
        let (status, body) = task.await.unwrap_or_else(|e| failed(&e));
        (status, Json(body)).into_response()
    }
}

fn problem(p: &Problem) -> Response {
    crate::respond::problem_response(p)
}

/// The feed's kind (`?kind=`) and format (Content-Type).
fn request_of(
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<(Kind, Format), Problem> {
    let names = Kind::NAMES.join(", ");
    let kind = match q.get("kind") {
        Some(k) => Kind::parse(k).ok_or_else(|| {
            Problem::invalid_field(code::REQUEST_INVALID, "kind", &format!("one of {names}"))
        })?,
        None => {
            return Err(Problem::invalid_field(
                code::REQUEST_INVALID,
                "kind",
                &format!("required: one of {names}"),
            ))
        }
    };
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("absent");
    let essence = given
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // Neither is a type a browser sends cross-site without a CORS preflight (which
    // this API refuses), so the rule of orders_http.rs holds for imports too.
    let format = match essence.as_str() {
        CSV => Format::Csv,
        NDJSON => Format::Ndjson,
        _ => {
            return Err(Problem::new(
                415,
                code::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type: must be {CSV} or {NDJSON}, not {given}"),
            ))
        }
    };
    Ok((kind, format))
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

/// The body written to a temporary file as it arrives, at most MAX_FEED_BYTES.
async fn spool(body: Body) -> Result<tempfile::TempPath, Problem> {
    let unavailable = |e: std::io::Error| {
        Problem::new(
            503,
            ErrorKind::StoreUnavailable.name(),
            format!("spooling the feed (TMPDIR): {e}"),
        )
    };
    let path = tempfile::Builder::new()
        .prefix("oms-feed-")
        .tempfile()
        .map_err(unavailable)?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&path).await.map_err(unavailable)?;
    let mut body = body;
    let mut written: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Problem::new(400, code::REQUEST_INVALID, format!("body: unreadable: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        written += data.len() as u64;
        if written > MAX_FEED_BYTES {
            let message = format!("body: a feed may be at most {MAX_FEED_BYTES} bytes; split it");
            return Err(Problem::new(413, code::REQUEST_TOO_LARGE, message));
        }
        file.write_all(&data).await.map_err(unavailable)?;
    }
    file.flush().await.map_err(unavailable)?;
    Ok(path)
}

/// The HTTP status and body of an import's result.
fn outcome(result: Result<Report, FeedError>) -> (StatusCode, Value) {
    let p = match result {
        Ok(report) if report.status == "invalid" => {
            let mut body = json!({
                "code": code::FEED_INVALID,
                "message": format!(
                    "{} of {} rows break a rule (errors lists them: line, field, rule); nothing was applied",
                    report.error_count, report.rows
                ),
            });
            if let (Value::Object(b), Ok(Value::Object(r))) =
                (&mut body, serde_json::to_value(&report))
            {
                b.extend(r);
            }
            return (StatusCode::UNPROCESSABLE_ENTITY, body);
        }
        Ok(report) => return (StatusCode::OK, json!(report)),
        Err(FeedError::Conflict(m)) => Problem::new(409, code::FEED_CONFLICT, m),
        Err(FeedError::Invalid(m)) => Problem::new(400, code::REQUEST_INVALID, m),
        Err(FeedError::Store(e)) => Problem::new(
            503,
            ErrorKind::StoreUnavailable.name(),
            format!("{e}; send the same feed again to resume it"),
        ),
    };
    (
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        p.body(),
    )
}

fn failed(e: &tokio::task::JoinError) -> (StatusCode, Value) {
    let p = Problem::new(
        500,
        code::INTERNAL_FAILURE,
        format!("the import task failed: {e}"),
    );
    (StatusCode::INTERNAL_SERVER_ERROR, p.body())
}

/// Progress lines every PROGRESS_EVERY while the import runs, then its answer.
fn stream(task: tokio::task::JoinHandle<(StatusCode, Value)>, progress: Arc<Progress>) -> Response {
    let state = (Some(task), progress);
    let lines = futures_util::stream::unfold(state, |(task, progress)| async move {
        let mut task = task?;
        let line = tokio::select! {
            done = &mut task => {
                let (status, body) = done.unwrap_or_else(|e| failed(&e));
                return Some((line_of(json!({"status": status.as_u16(), "body": body})), (None, progress)));
            }
            () = tokio::time::sleep(PROGRESS_EVERY) => json!({"progress": {
                "bytes_checked": progress.bytes_read.load(Ordering::Relaxed),
                "rows_checked": progress.rows_checked.load(Ordering::Relaxed),
                "rows_applied": progress.rows_applied.load(Ordering::Relaxed),
                "checked": progress.checked.load(Ordering::Relaxed),
            }}),
        };
        Some((line_of(line), (Some(task), progress)))
    });
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(lines)).into_response()
}

fn line_of(v: Value) -> Result<Bytes, std::convert::Infallible> {
    let mut text = v.to_string();
    text.push('\n');
    Ok(Bytes::from(text))
}
