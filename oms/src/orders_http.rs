//! The Orders API routes (beside the Step Functions API in `oms up`). Every error is
//! JSON `{"code", "message", "fields"?}`, whatever produced it; the routes are described
//! by `GET /openapi.json`.
//!
//! A page on another site can make a visitor's browser send a form or a text/plain
//! POST here without asking anyone. So bodies must be `application/json` (which a
//! browser sends cross-site only after a CORS preflight, which this API refuses), and a
//! state-changing request that a browser says comes from another origin is refused.

use crate::respond::{body_too_large, problem_response, MAX_REQUEST_BYTES};
use activities::errors::ErrorKind;
use activities::faults::FaultPlan;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oms_orders::{code, Orders, Problem, ASSOCIATE_HEADER};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("openapi.json");
/// The web console: one page, served by the binary (no separate dev server).
pub const CONSOLE: &str = include_str!("console.html");

pub fn routes(orders: Arc<Orders>) -> Router {
    routes_with(orders, Router::new())
}

/// The Orders API's routes and `more` (the order events'), behind the same guards.
pub fn routes_with(orders: Arc<Orders>, more: Router) -> Router {
    Router::new()
        .route("/orders", post(submit).get(list))
        .route("/orders/{id}", get(show).patch(amend))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/retry", get(retry_preview).post(retry))
        .route("/shipments/{id}/picked", post(picked))
        .route("/inventory", get(inventory))
        .route("/imports", post(crate::imports_http::post_imports))
        .route(
            "/admin/faults",
            get(faults_get).put(faults_put).delete(faults_clear),
        )
        .route("/console", get(|| async { axum::response::Html(CONSOLE) }))
        .route("/console/", get(|| async { axum::response::Html(CONSOLE) }))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI,
                )
            }),
        )
        .with_state(orders)
        .merge(more)
        // The last layer added runs first: the origin check, then the routes.
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(same_origin))
}

fn answer(result: Result<Value, Problem>, ok: StatusCode) -> Response {
    match result {
        Ok(v) => (ok, Json(v)).into_response(),
        Err(p) => problem_response(&p),
    }
}

/// Refuses a state-changing request that a browser sent from a page of another origin.
/// Clients that are not browsers (curl, the CLI, the SDKs) send no Origin, and the
/// console is served from this origin.
async fn same_origin(req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = req.headers();
    match headers.get(header::ORIGIN) {
        Some(origin) if !reads && !is_own_origin(origin, headers.get(header::HOST)) => {
            let shown = |v: Option<&HeaderValue>| {
                v.and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            };
            problem_response(&Problem::new(
                403,
                code::CROSS_ORIGIN,
                format!(
                    "Origin: {} is not this server's origin (Host: {}); a page of another \
                     site cannot change orders",
                    shown(Some(origin)),
                    shown(headers.get(header::HOST))
                ),
            ))
        }
        _ => next.run(req).await,
    }
}

/// Whether `origin` is the server the request was addressed to (its Host). The server
/// speaks plain HTTP; a TLS proxy in front of it passes the Host on, so https with the
/// same host and port is this server too. (No other site's page has that origin.)
fn is_own_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
    })
}

/// Rewrites the errors axum produces itself (a method a route does not take, a path
/// or query it cannot decode) from plain text into the API's JSON errors.
async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = match status {
        // axum adds the Allow header to this response after this layer.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} {path}: method not allowed (Allow lists the methods it takes)")
        }
        _ if text.is_empty() => format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        ),
        _ => format!("{method} {path}: {}", String::from_utf8_lossy(&text)),
    };
    problem_response(&Problem::new(status.as_u16(), code_of(status), message))
}

/// The code of an error that only has an HTTP status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => code::ROUTE_NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => code::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => code::REQUEST_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => code::UNSUPPORTED_MEDIA_TYPE,
        s if s.is_server_error() => code::INTERNAL_FAILURE,
        _ => code::REQUEST_INVALID,
    }
}

/// A request's JSON body: at most MAX_REQUEST_BYTES (413), `application/json` (415)
/// and JSON (400 with `invalid`, the code of the route's bad input). No body is `{}`.
pub(crate) async fn json_body(
    headers: &HeaderMap,
    body: Body,
    invalid: &str,
) -> Result<Value, Problem> {
    Ok(optional_json_body(headers, body, invalid)
        .await?
        .unwrap_or_else(|| json!({})))
}

/// Like [`json_body`], with no body as `None`, for the routes that require one.
async fn optional_json_body(
    headers: &HeaderMap,
    body: Body,
    invalid: &str,
) -> Result<Option<Value>, Problem> {
    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|e| {
            if body_too_large(&e) {
                Problem::new(
                    413,
                    code::REQUEST_TOO_LARGE,
                    format!("body: must be at most {MAX_REQUEST_BYTES} bytes"),
                )
            } else {
                Problem::new(400, code::REQUEST_INVALID, format!("body: unreadable: {e}"))
            }
        })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    check_json_type(headers)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Problem::new(400, invalid, format!("body: not JSON: {e}")))
}

fn check_json_type(headers: &HeaderMap) -> Result<(), Problem> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given.as_deref().and_then(|t| t.split(';').next());
    if essence.is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(Problem::new(
        415,
        code::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type: must be application/json, not {}",
            given.as_deref().unwrap_or("absent")
        ),
    ))
}

async fn submit(State(o): State<Arc<Orders>>, headers: HeaderMap, body: Body) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let result = match json_body(&headers, body, ErrorKind::OrderInvalid.name()).await {
        Ok(v) => {
            let named_by_key = key.is_some() && v.get("order_id").is_none();
            hide_key_reuse(o.submit(v, key.as_deref()).await, named_by_key)
        }
        Err(p) => Err(p),
    };
    answer(result, StatusCode::ACCEPTED)
}

/// An order without an order_id is named after its Idempotency-Key, so a different
/// order under a used key conflicts with the order placed first. That is a reused key,
/// and the answer must not name the other order: its id would let whoever reused the
/// key read it.
fn hide_key_reuse(result: Result<Value, Problem>, named_by_key: bool) -> Result<Value, Problem> {
    match result {
        Err(p) if named_by_key && p.code == ErrorKind::OrderConflict.name() => Err(Problem::new(
            422,
            code::IDEMPOTENCY_KEY_REUSED,
            "Idempotency-Key: already used for a different order; send a new key with a \
                 new order (the same order with the same key is answered as before)",
        )),
        other => other,
    }
}

async fn list(State(o): State<Arc<Orders>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    answer(o.list(&q).await, StatusCode::OK)
}

async fn show(State(o): State<Arc<Orders>>, Path(id): Path<String>) -> Response {
    answer(o.view(&id).await, StatusCode::OK)
}

async fn amend(
    State(o): State<Arc<Orders>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let invalid = ErrorKind::OrderInvalid.name();
    let result = match (
        associate(&headers),
        optional_json_body(&headers, body, invalid).await,
    ) {
        (Err(p), _) | (_, Err(p)) => Err(p),
        (_, Ok(None)) => Err(Problem::invalid_field(
            invalid,
            "body",
            "required: {\"version\": N, \"ship_to\"?: {...}, \"lines\"?: [...]}",
        )),
        (Ok(by), Ok(Some(v))) => o.amend(&id, &v, &by).await,
    };
    answer(result, StatusCode::ACCEPTED)
}

/// The associate an `X-Oms-Associate` header names: 1 to 64 letters, digits, '-', '_',
/// '.' or '@'.
fn associate(headers: &HeaderMap) -> Result<String, Problem> {
    let Some(v) = headers.get(ASSOCIATE_HEADER) else {
        return Ok("api".into());
    };
    let ok = v.to_str().ok().filter(|s| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    });
    ok.map(str::to_string).ok_or_else(|| {
        Problem::invalid_field(
            code::REQUEST_INVALID,
            "X-Oms-Associate",
            "1 to 64 letters, digits, '-', '_', '.' or '@'",
        )
    })
}

async fn cancel(State(o): State<Arc<Orders>>, Path(id): Path<String>) -> Response {
    answer(o.cancel(&id).await, StatusCode::ACCEPTED)
}

async fn retry_preview(State(o): State<Arc<Orders>>, Path(id): Path<String>) -> Response {
    answer(o.retry_preview(&id).await, StatusCode::OK)
}

async fn retry(State(o): State<Arc<Orders>>, Path(id): Path<String>) -> Response {
    answer(o.retry(&id).await, StatusCode::ACCEPTED)
}

async fn picked(
    State(o): State<Arc<Orders>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match json_body(&headers, body, code::REQUEST_INVALID).await {
        Ok(v) => o.picked(&id, &v).await,
        Err(p) => Err(p),
    };
    answer(result, StatusCode::OK)
}

async fn inventory(State(o): State<Arc<Orders>>) -> Response {
    answer(o.inventory().await, StatusCode::OK)
}

fn store_unavailable(e: impl std::fmt::Display) -> Problem {
    Problem::new(503, ErrorKind::StoreUnavailable.name(), e.to_string())
}

/// Fault injection is for tests and game days: a server started without
/// `--fault-injection` neither serves nor reads fault plans.
fn faults_on(o: &Orders) -> Result<(), Problem> {
    if o.ctx.faults.enabled() {
        return Ok(());
    }
    Err(Problem::new(
        403,
        code::FAULTS_DISABLED,
        "fault injection is off: start oms up with --fault-injection (docs/activities.md)",
    ))
}

async fn faults_get(State(o): State<Arc<Orders>>) -> Response {
    if let Err(p) = faults_on(&o) {
        return problem_response(&p);
    }
    let result = o
        .ctx
        .faults
        .get()
        .await
        .map(|p| json!(p))
        .map_err(store_unavailable);
    answer(result, StatusCode::OK)
}

async fn faults_put(State(o): State<Arc<Orders>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(p) = faults_on(&o) {
        return problem_response(&p);
    }
    // Replacing every plan with nothing by leaving the body out is more likely a
    // mistake than a wish: `{}` (or DELETE) clears them.
    let plans = optional_json_body(&headers, body, code::FAULTS_INVALID)
        .await
        .and_then(|v| {
            v.ok_or_else(|| {
                Problem::new(
                    400,
                    code::FAULTS_INVALID,
                    "body: required: the fault plans by activity ({} or DELETE clears them)",
                )
            })
        })
        .and_then(|v| decode_plans(&v));
    let result = match plans {
        Err(p) => Err(p),
        Ok(plans) => match o.ctx.faults.set(&plans).await {
            Ok(()) => Ok(json!(plans)),
            Err(e) => Err(Problem::new(400, code::FAULTS_INVALID, e)),
        },
    };
    answer(result, StatusCode::OK)
}

/// The fault plans by activity, or the path of the value that is wrong.
fn decode_plans(v: &Value) -> Result<BTreeMap<String, FaultPlan>, Problem> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(v, &mut track);
    serde::Deserialize::deserialize(de).map_err(|e: serde_json::Error| {
        Problem::new(400, code::FAULTS_INVALID, format!("{}: {e}", track.path()))
    })
}

async fn faults_clear(State(o): State<Arc<Orders>>) -> Response {
    if let Err(p) = faults_on(&o) {
        return problem_response(&p);
    }
    let result = o
        .ctx
        .faults
        .clear()
        .await
        .map(|()| json!({}))
        .map_err(store_unavailable);
    answer(result, StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_it_was_sent_to_is_its_own_origin() {
        let host = HeaderValue::from_static("127.0.0.1:8080");
        let own = |origin: &'static str, host: Option<&HeaderValue>| {
            is_own_origin(&HeaderValue::from_static(origin), host)
        };
        assert!(own("http://127.0.0.1:8080", Some(&host)));
        assert!(own("https://127.0.0.1:8080", Some(&host)));
        for other in [
            "http://127.0.0.1:8081",
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://127.0.0.1:8080.evil.example",
            "null",
            "",
        ] {
            assert!(!own(other, Some(&host)), "{other}");
        }
        assert!(!own("http://127.0.0.1:8080", None), "no Host, no match");
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let with = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            check_json_type(&h).map_err(|p| (p.status, p.code))
        };
        assert_eq!(with("application/json"), Ok(()));
        assert_eq!(with("Application/JSON; charset=utf-8"), Ok(()));
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            assert_eq!(
                with(t),
                Err((415, code::UNSUPPORTED_MEDIA_TYPE.into())),
                "{t}"
            );
        }
        assert!(check_json_type(&HeaderMap::new()).is_err());
    }

    /// The document describes the orders the server takes: its countries are the
    /// ones oms ships to (schemathesis would find a mismatch only by luck).
    #[test]
    fn openapi_countries_are_the_ones_oms_ships_to() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let listed = &doc["components"]["schemas"]["OrderSubmission"]["properties"]["ship_to"]
            ["properties"]["country"]["enum"];
        let ships_to: Vec<&str> = activities::model::COUNTRIES
            .iter()
            .map(|c| c.code)
            .collect();
        assert_eq!(listed, &json!(ships_to));
    }

    /// The OpenAPI document is written by hand: it must name every code of the API's own.
    #[test]
    fn openapi_lists_every_error_code() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let listed = doc["components"]["schemas"]["Error"]["description"]
            .as_str()
            .unwrap();
        for c in code::ALL {
            assert!(
                listed.contains(c),
                "{c} is not in the Error schema's description"
            );
        }
    }

    /// The OpenAPI document is written by hand; the door's rules are the generated
    /// schema's. They must say the same.
    #[test]
    fn openapi_publishes_the_options_rules_the_door_checks() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let published = &doc["components"]["schemas"]["OrderSubmission"]["properties"]["options"];
        let generated: Value = serde_json::from_str(include_str!(
            "../../statemachines/schemas/OrderOptions.json"
        ))
        .unwrap();
        assert_eq!(published["required"], generated["required"]);
        assert_eq!(published["additionalProperties"], json!(false));
        assert_eq!(generated["additionalProperties"], json!(false));
        for field in ["pick_timeout_seconds", "pick_heartbeat_seconds"] {
            for rule in ["type", "minimum", "maximum"] {
                assert_eq!(
                    published["properties"][field][rule], generated["properties"][field][rule],
                    "{field}.{rule}"
                );
            }
        }
    }
}
