//! How every HTTP error and JSON answer of `oms up` is written, shared by the Step
//! Functions front (`server.rs`), the Orders API (`orders_http.rs`) and the guards in
//! front of both (`auth.rs`, `hosts.rs`). It sits below all of them so that none of
//! them imports another for these.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_orders::Problem;
use saga_core::api::ApiError;
use saga_core::dispatch::error_body;

/// The awsJson 1.0 content type, of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The largest request body accepted; a larger one is a ValidationException.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Whether reading a body failed because it was longer than the limit.
pub fn body_too_large(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

/// A Step Functions API answer: `body` as awsJson 1.0.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let text = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// A Step Functions API error, in the shape botocore and smithy-rs read.
pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, &error_body(e));
    response.headers_mut().insert(
        "x-amzn-ErrorType",
        HeaderValue::from_static(e.code.as_str()),
    );
    response
}

/// An Orders API error as a response.
pub fn problem_response(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(p.body())).into_response()
}
