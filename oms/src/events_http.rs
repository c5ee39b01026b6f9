//! The order events' routes: the live stream (`GET /events`, Server-Sent Events) and
//! webhook subscriptions. Only requests and answers here; relaying, delivery, retries
//! and signing are in `crate::events`. Errors are the Orders API's JSON shape.

use crate::events::log::{EventLog, Logged};
use crate::events::webhooks::check_pattern;
use crate::events::Hub;
use crate::orders_http::json_body;
use crate::respond::problem_response;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oms_orders::{code, Problem};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub fn routes(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/events", get(stream))
        .route("/subscriptions", post(subscribe).get(list))
        .route("/subscriptions/{id}", axum::routing::delete(unsubscribe))
        .route("/subscriptions/{id}/dead-letters", get(dead_letters))
        .route("/subscriptions/{id}/dead-letters/replay", post(replay))
        .with_state(hub)
}

fn answer(result: Result<Value, Problem>, ok: StatusCode) -> Response {
    match result {
        Ok(v) => (ok, Json(v)).into_response(),
        Err(p) => problem_response(&p),
    }
}

fn unavailable(e: String) -> Problem {
    Problem::new(503, code::INTERNAL_FAILURE, e)
}

/// Where a stream starts: `after` in the query, else the Last-Event-ID header (what a
/// reconnecting EventSource sends), else 0 (from the first event). `after=latest` starts
/// at the log's end: a reader that wants only what happens from now on (a console tab,
/// `oms load`) need not read the whole history first.
fn start_after(
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
    log: &EventLog,
) -> Result<u64, Problem> {
    if q.get("after").is_some_and(|a| a == "latest") {
        return log.last_seq().map_err(unavailable);
    }
    let (field, text) = match (q.get("after"), headers.get("last-event-id")) {
        (Some(a), _) => ("after", a.clone()),
        (None, Some(h)) => (
            "Last-Event-ID",
            String::from_utf8_lossy(h.as_bytes()).into_owned(),
        ),
        (None, None) => return Ok(0),
    };
    text.trim().parse::<u64>().map_err(|_| {
        Problem::invalid_field(
            code::REQUEST_INVALID,
            field,
            &format!("a non-negative integer event sequence or 'latest' (not '{text}')"),
        )
    })
}

/// What a stream still has to send.
struct Tail {
    log: Arc<EventLog>,
    after: u64,
    grown: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    pending: VecDeque<Logged>,
}

async fn stream(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let after = match start_after(&q, &headers, &hub.log) {
        Ok(a) => a,
        Err(p) => return problem_response(&p),
    };
    let tail = Tail {
        log: hub.log.clone(),
        after,
        grown: hub.watch(),
        closing: hub.closing(),
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(e) = t.pending.pop_front() {
                t.after = e.seq;
                let event = Event::default()
                    .id(e.seq.to_string())
                    .event(e.kind)
                    .data(e.body);
                return Some((Ok::<_, Infallible>(event), t));
            }
            // Marked seen before reading, so an event logged after the read wakes us.
            t.grown.borrow_and_update();
            match t.log.after(t.after, 500) {
                // Told only once on disk (log.rs); a log that cannot be made durable
                // ends the stream, as one that cannot be read does.
                Ok(page) if !page.is_empty() => {
                    let last = page.last().map_or(0, |e| e.seq);
                    t.log.sync_through(last).await.ok()?;
                    t.pending.extend(page)
                }
                Ok(_) => {
                    tokio::select! {
                        r = t.grown.changed() => r.ok()?,
                        _ = t.closing.wait_for(|c| *c) => return None,
                    }
                }
                // The log cannot be read: end the stream; the client reconnects with
                // Last-Event-ID and misses nothing.
                Err(_) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response()
}

/// The body of POST /subscriptions: `url` (http or https) and `types`.
fn subscription_request(body: &Value) -> Result<(String, Vec<String>), Problem> {
    let bad = |field: &str, rule: &str| Problem::invalid_field(code::REQUEST_INVALID, field, rule);
    let url = body
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("url", "required: the http(s) URL to POST events to"))?;
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(bad("url", &format!("an http or https URL (not '{url}')"))),
    }
    let types = body.get("types").and_then(Value::as_array).ok_or_else(|| {
        bad(
            "types",
            "required: a list of event types or prefixes like oms.order.*",
        )
    })?;
    if types.is_empty() {
        return Err(bad("types", "at least one event type or prefix"));
    }
    let mut out = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let field = format!("types[{i}]");
        let t = t.as_str().ok_or_else(|| bad(&field, "a string"))?;
        check_pattern(t).map_err(|rule| bad(&field, &rule))?;
        out.push(t.to_string());
    }
    Ok((url.to_string(), out))
}

async fn subscribe(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = json_body(&headers, body, code::REQUEST_INVALID).await?;
        let (url, types) = subscription_request(&body)?;
        let sub = hub.log.subscribe(&url, &types).await.map_err(unavailable)?;
        hub.start_workers().map_err(unavailable)?;
        // The secret is shown this once: the receiver needs it to verify signatures.
        let mut view = json!(sub);
        view["secret"] = json!(sub.secret);
        Ok(view)
    }
    .await;
    answer(result, StatusCode::CREATED)
}

async fn list(State(hub): State<Arc<Hub>>) -> Response {
    let result = hub
        .log
        .subscriptions()
        .map(|s| json!({"subscriptions": s}))
        .map_err(unavailable);
    answer(result, StatusCode::OK)
}

fn not_found(id: &str) -> Problem {
    Problem::new(
        404,
        code::SUBSCRIPTION_NOT_FOUND,
        format!("id: no subscription '{id}' (GET /subscriptions lists them)"),
    )
}

async fn unsubscribe(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    match hub.log.unsubscribe(&id).await {
        Ok(true) => {
            hub.forget(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => problem_response(&not_found(&id)),
        Err(e) => problem_response(&unavailable(e)),
    }
}

async fn dead_letters(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let result = (|| {
        hub.log
            .subscription(&id)
            .map_err(unavailable)?
            .ok_or_else(|| not_found(&id))?;
        let dead = hub.log.dead_letters(&id).map_err(unavailable)?;
        Ok(json!({"dead_letters": dead}))
    })();
    answer(result, StatusCode::OK)
}

async fn replay(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let result = async {
        hub.log
            .subscription(&id)
            .map_err(unavailable)?
            .ok_or_else(|| not_found(&id))?;
        let n = hub.log.replay(&id).await.map_err(unavailable)?;
        hub.nudge();
        Ok(json!({"replaying": n}))
    }
    .await;
    answer(result, StatusCode::ACCEPTED)
}
