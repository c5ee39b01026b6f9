//! The Orders API routes (beside the Step Functions API in `oms up`). Errors are JSON
//! `{"code", "message", "fields"?}`; the routes are described by `GET /openapi.json`.

use crate::orders::{Orders, Problem};
use activities::faults::FaultPlan;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("openapi.json");
/// The web console: one page, served by the binary (no separate dev server).
pub const CONSOLE: &str = include_str!("console.html");

pub fn routes(orders: Arc<Orders>) -> Router {
    Router::new()
        .route("/orders", post(submit).get(list))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/retry", get(retry_preview).post(retry))
        .route("/shipments/{id}/picked", post(picked))
        .route("/inventory", get(inventory))
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
}

fn answer(result: Result<Value, Problem>, ok: StatusCode) -> Response {
    match result {
        Ok(v) => (ok, Json(v)).into_response(),
        Err(p) => (
            StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(p.body()),
        )
            .into_response(),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Problem> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(400, "Order.Invalid", format!("body: not JSON: {e}")))
}

async fn submit(State(o): State<Arc<Orders>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let result = match parse_body(&body) {
        Ok(v) => o.submit(v, key.as_deref()).await,
        Err(p) => Err(p),
    };
    answer(result, StatusCode::ACCEPTED)
}

async fn list(State(o): State<Arc<Orders>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    answer(o.list(&q).await, StatusCode::OK)
}

async fn show(State(o): State<Arc<Orders>>, Path(id): Path<String>) -> Response {
    answer(o.view(&id).await, StatusCode::OK)
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

async fn picked(State(o): State<Arc<Orders>>, Path(id): Path<String>, body: Bytes) -> Response {
    let result = match parse_body(&body) {
        Ok(v) => o.picked(&id, &v).await,
        Err(p) => Err(p),
    };
    answer(result, StatusCode::OK)
}

async fn inventory(State(o): State<Arc<Orders>>) -> Response {
    answer(o.inventory().await, StatusCode::OK)
}

async fn faults_get(State(o): State<Arc<Orders>>) -> Response {
    let result = o
        .ctx
        .faults
        .get()
        .await
        .map(|p| json!(p))
        .map_err(|e| Problem::new(503, "Store.Unavailable", e.to_string()));
    answer(result, StatusCode::OK)
}

async fn faults_put(State(o): State<Arc<Orders>>, body: Bytes) -> Response {
    let plans: Result<BTreeMap<String, FaultPlan>, Problem> = parse_body(&body).and_then(|v| {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(&v, &mut track);
        serde::Deserialize::deserialize(de).map_err(|e: serde_json::Error| {
            Problem::new(400, "Faults.Invalid", format!("{}: {e}", track.path()))
        })
    });
    let result = match plans {
        Err(p) => Err(p),
        Ok(plans) => match o.ctx.faults.set(&plans).await {
            Ok(()) => Ok(json!(plans)),
            Err(e) => Err(Problem::new(400, "Faults.Invalid", e)),
        },
    };
    answer(result, StatusCode::OK)
}

async fn faults_clear(State(o): State<Arc<Orders>>) -> Response {
    let result = o
        .ctx
        .faults
        .clear()
        .await
        .map(|()| json!({}))
        .map_err(|e| Problem::new(503, "Store.Unavailable", e.to_string()));
    answer(result, StatusCode::OK)
}
