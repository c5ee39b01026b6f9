//! HTTP Tasks (`arn:aws:states:::http:invoke`) as AWS documents them in "Call HTTPS
//! APIs in Step Functions workflows"
//! (https://docs.aws.amazon.com/step-functions/latest/dg/call-https-apis.html): the
//! Parameters checked, merged with the EventBridge connection's (connections.rs), sent
//! unsigned over the SDK's connector (so `https://` works), and the answer shaped as
//! `{Headers, ResponseBody, StatusCode, StatusText}`; a non-2xx status fails the task
//! with `States.Http.StatusCode.NNN`, no answer with `States.Http.Socket`.

use super::connections::{
    Auth, Connection, Connections, HttpParameters, OAuth, ERROR_PREFIX, MASK,
};
use super::signed;
use asl::error::names;
use asl::Failure;
use axum::http;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// "HTTP task requests will timeout after 60 seconds."
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The methods an HTTP Task may use.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/// Headers a definition may not set: the task fails with States.Runtime.
const FORBIDDEN_HEADERS: &[&str] = &[
    "a-im",
    "accept-charset",
    "accept-datetime",
    "accept-encoding",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-md5",
    "date",
    "expect",
    "forwarded",
    "from",
    "host",
    "http2-settings",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "proxy-authorization",
    "referer",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "warning",
];
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["x-forwarded-", "x-amz-", "x-amzn-"];

/// RFC 3986's unreserved characters stay; everything else is percent-encoded (AWS's
/// own example sends `Monthly%20subscription` and `metadata%5Border_details%5D`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How `URL_ENCODED` bodies write arrays (`RequestEncodingOptions.ArrayFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFormat {
    Indices,
    Repeat,
    Commas,
    Brackets,
}

/// The Parameters of an HTTP Task, checked.
#[derive(Debug)]
pub struct Spec {
    pub endpoint: String,
    pub method: String,
    /// The field that named the connection, for errors, and the ARN.
    pub connection_field: &'static str,
    pub connection_arn: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// `None` for JSON bodies; the array format for `URL_ENCODED`.
    pub form: Option<ArrayFormat>,
}

/// A request ready to send (the OAuth bearer token is added after).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parameters or an answer oms cannot use: States.Runtime, as AWS documents for them.
fn runtime(message: impl std::fmt::Display) -> Failure {
    Failure::runtime(format!("http:invoke: {message}"))
}

/// Performs the HTTP Task whose effective Parameters are `params`.
pub async fn invoke(
    client: &signed::Client,
    connections: &Connections,
    region: &str,
    params: &Value,
) -> Result<Value, Failure> {
    invoke_traced(client, connections, region, params, None)
        .await
        .0
}

/// An HTTP Task's exchange, for TestState's TRACE inspection data: the request as
/// sent (the connection's secrets masked unless revealed) and the answer, if one came.
pub struct Trace {
    pub request: Prepared,
    pub response: Option<signed::Response>,
}

/// Performs the HTTP Task and, when `reveal_secrets` is given, keeps its exchange.
pub async fn invoke_traced(
    client: &signed::Client,
    connections: &Connections,
    region: &str,
    params: &Value,
    reveal_secrets: Option<bool>,
) -> (Result<Value, Failure>, Option<Trace>) {
    let checked = parse(params).and_then(|spec| {
        let conn = connections.find(spec.connection_field, &spec.connection_arn)?;
        conn.admit(&spec.endpoint)?;
        let request = prepare(&spec, conn, region)?;
        let shown = match reveal_secrets {
            Some(false) => Some(prepare(&spec, &conn.masked(), region)?),
            _ => None,
        };
        Ok((conn, request, shown))
    });
    let (conn, mut request, mut shown) = match checked {
        Ok(c) => c,
        Err(f) => return (Err(f), None),
    };
    if let Auth::OAuth(o) = &conn.auth {
        let token = match bearer(client, connections, &conn.name, o).await {
            Ok(t) => t,
            Err(f) => return (Err(f), None),
        };
        let bearer = |t: &str| ("authorization".to_string(), format!("Bearer {t}"));
        request.headers.push(bearer(&token));
        if let Some(s) = shown.as_mut() {
            s.headers.push(bearer(MASK));
        }
    }
    let trace_request = reveal_secrets.map(|_| shown.unwrap_or_else(|| request.clone()));
    let trace = |response| trace_request.map(|request| Trace { request, response });
    let response = match send(client, request).await {
        Ok(r) => r,
        Err(f) => return (Err(f), trace(None)),
    };
    if matches!(conn.auth, Auth::OAuth(_)) && matches!(response.status, 401 | 407) {
        // EventBridge renews a token the API refuses; the next attempt fetches one.
        connections.forget_token(&conn.name).await;
    }
    let outcome = result(&response);
    (outcome, trace(Some(response)))
}

/// Checks the Parameters as AWS documents them, naming the field at fault.
pub fn parse(params: &Value) -> Result<Spec, Failure> {
    let p = params
        .as_object()
        .ok_or_else(|| runtime("the Parameters of an HTTP Task must be an object"))?;
    let endpoint = match p.get("ApiEndpoint") {
        Some(Value::String(s)) if s.starts_with("https://") || s.starts_with("http://") => s,
        Some(other) => {
            return Err(runtime(format!(
                "ApiEndpoint must be an https:// (or, locally, http://) URL, not {other}"
            )))
        }
        None => return Err(runtime("the field 'ApiEndpoint' is required")),
    };
    let method = match p.get("Method").and_then(Value::as_str) {
        Some(m) if METHODS.contains(&m) => m.to_string(),
        Some(m) => {
            return Err(runtime(format!(
                "Method '{m}' is not one of {}",
                METHODS.join(", ")
            )))
        }
        None => return Err(runtime("the field 'Method' is required (a string)")),
    };
    let (connection_field, connection_arn) = connection_arn(p)?;
    Ok(Spec {
        endpoint: endpoint.clone(),
        method,
        connection_field,
        connection_arn,
        headers: headers(p.get("Headers"))?,
        query: query(p.get("QueryParameters"))?,
        body: p.get("RequestBody").cloned(),
        form: transform(p.get("Transform"))?,
    })
}

/// The ConnectionArn, from `InvocationConfig` or `Authentication` (AWS takes either).
fn connection_arn(p: &Map<String, Value>) -> Result<(&'static str, String), Failure> {
    for (field, path) in [
        (
            "InvocationConfig",
            "Parameters.InvocationConfig.ConnectionArn",
        ),
        ("Authentication", "Parameters.Authentication.ConnectionArn"),
    ] {
        if let Some(section) = p.get(field) {
            return match section.get("ConnectionArn") {
                Some(Value::String(arn)) => Ok((path, arn.clone())),
                _ => Err(runtime(format!("{path} is required (a string)"))),
            };
        }
    }
    Err(runtime(
        "an HTTP Task needs Authentication.ConnectionArn (or InvocationConfig.ConnectionArn): \
         the EventBridge connection, defined for oms in oms.toml's [[connections]]",
    ))
}

/// A scalar as a header, query or form value: strings as they are, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Headers: an object (an array value sends the header once per item), or an array
/// of such objects.
fn headers(v: Option<&Value>) -> Result<Vec<(String, String)>, Failure> {
    let objects: Vec<&Map<String, Value>> = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(obj)) => vec![obj],
        Some(Value::Array(items)) => (items.iter())
            .map(|i| i.as_object())
            .collect::<Option<_>>()
            .ok_or_else(|| runtime("Headers as an array must hold objects of name-value pairs"))?,
        Some(other) => {
            return Err(runtime(format!(
                "Headers must be an object of name-value pairs, not {other}"
            )))
        }
    };
    let mut out = vec![];
    for (name, value) in objects.into_iter().flatten() {
        check_header_name(name)?;
        let values: Vec<String> = match value {
            Value::Array(items) => items.iter().map(text).collect(),
            Value::Object(_) => {
                return Err(runtime(format!(
                    "Headers.{name} must be a string or an array of strings"
                )))
            }
            scalar => vec![text(scalar)],
        };
        for value in values {
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(runtime(format!(
                    "Headers.{name} holds characters a header value cannot (such as a line break)"
                )));
            }
            out.push((name.clone(), value));
        }
    }
    Ok(out)
}

/// Refuses the headers AWS refuses, and names that are not header names.
fn check_header_name(name: &str) -> Result<(), Failure> {
    let lower = name.to_ascii_lowercase();
    let forbidden = FORBIDDEN_HEADERS.contains(&lower.as_str())
        || (FORBIDDEN_HEADER_PREFIXES.iter()).any(|p| lower.starts_with(p));
    if forbidden {
        return Err(runtime(format!(
            "the header '{name}' is not allowed in an HTTP Task's Headers \
             (AWS sets it, or refuses it; put credentials in the connection)"
        )));
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(runtime(format!("Headers: '{name}' is not a header name")));
    }
    Ok(())
}

/// QueryParameters: an object (an array value repeats its key), an array of such
/// objects, or a query string.
fn query(v: Option<&Value>) -> Result<Vec<(String, String)>, Failure> {
    let mut out = vec![];
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.extend(
            form_urlencoded::parse(s.trim_start_matches('?').as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        ),
        Some(Value::Object(obj)) => query_object(obj, &mut out),
        Some(Value::Array(items)) => {
            for item in items {
                let obj = item.as_object().ok_or_else(|| {
                    runtime("QueryParameters as an array must hold objects of key-value pairs")
                })?;
                query_object(obj, &mut out);
            }
        }
        Some(other) => {
            return Err(runtime(format!(
                "QueryParameters must be an object, an array or a string, not {other}"
            )))
        }
    }
    Ok(out)
}

fn query_object(obj: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (k, v) in obj {
        match v {
            Value::Array(items) => out.extend(items.iter().map(|i| (k.clone(), text(i)))),
            other => out.push((k.clone(), text(other))),
        }
    }
}

fn transform(v: Option<&Value>) -> Result<Option<ArrayFormat>, Failure> {
    let Some(t) = v else { return Ok(None) };
    let encoding = t.get("RequestBodyEncoding").and_then(Value::as_str);
    let format = t
        .get("RequestEncodingOptions")
        .and_then(|o| o.get("ArrayFormat"))
        .and_then(Value::as_str);
    let array_format = match format {
        None | Some("INDICES") => ArrayFormat::Indices,
        Some("REPEAT") => ArrayFormat::Repeat,
        Some("COMMAS") => ArrayFormat::Commas,
        Some("BRACKETS") => ArrayFormat::Brackets,
        Some(other) => {
            return Err(runtime(format!(
                "Transform.RequestEncodingOptions.ArrayFormat '{other}' is not one of INDICES, \
                 REPEAT, COMMAS, BRACKETS"
            )))
        }
    };
    match encoding {
        None | Some("NONE") => Ok(None),
        Some("URL_ENCODED") => Ok(Some(array_format)),
        Some(other) => Err(runtime(format!(
            "Transform.RequestBodyEncoding '{other}' is not one of NONE, URL_ENCODED"
        ))),
    }
}

/// The request: the task's headers, query and body merged with the connection's
/// (the connection's win), the headers AWS sets, and API_KEY or BASIC authorization.
pub fn prepare(spec: &Spec, conn: &Connection, region: &str) -> Result<Prepared, Failure> {
    let inv = &conn.invocation;
    let mut headers = overlay(&spec.headers, &inv.headers, true);
    let query = overlay(&spec.query, &inv.query, false);
    let body = merged_body(spec.body.as_ref(), &inv.body)?;
    let body = match (&body, spec.form) {
        (None, _) => vec![],
        (Some(Value::String(s)), _) => s.clone().into_bytes(),
        (Some(b), Some(format)) => form_body(b, format).into_bytes(),
        (Some(b), None) => b.to_string().into_bytes(),
    };
    if !body.is_empty() && !has(&headers, "content-type") {
        let content_type = match spec.form {
            Some(_) => "application/x-www-form-urlencoded",
            None => "application/json; charset=UTF-8",
        };
        headers.push(("content-type".into(), content_type.into()));
    }
    headers.push((
        "user-agent".into(),
        format!("Amazon|StepFunctions|HttpInvoke|{region}"),
    ));
    headers.push(("range".into(), "bytes=0-262144".into()));
    match &conn.auth {
        Auth::ApiKey { header, value } => {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(header));
            headers.push((header.clone(), value.clone()));
        }
        Auth::Basic { username, password } => {
            headers.push(("authorization".into(), basic(username, password)));
        }
        Auth::OAuth(_) => {}
    }
    Ok(Prepared {
        method: spec.method.clone(),
        url: with_query(&spec.endpoint, &query),
        headers,
        body,
    })
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// The task's pairs with the connection's added, a key the connection gives losing the
/// task's values for it (header names compare without case).
fn overlay(
    task: &[(String, String)],
    conn: &std::collections::BTreeMap<String, String>,
    ignore_case: bool,
) -> Vec<(String, String)> {
    let same = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let mut out: Vec<(String, String)> = (task.iter())
        .filter(|(k, _)| !conn.keys().any(|c| same(c, k)))
        .cloned()
        .collect();
    out.extend(conn.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// RequestBody with the connection's body parameters over it; a string body cannot
/// take them (AWS fails the task with States.Runtime).
fn merged_body(
    body: Option<&Value>,
    conn: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Value>, Failure> {
    if conn.is_empty() {
        return Ok(body.cloned());
    }
    let mut obj = match body {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(runtime(
                "the RequestBody is not a JSON object, so the connection's body parameters \
                 cannot be merged into it",
            ))
        }
    };
    for (k, v) in conn {
        obj.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(Some(Value::Object(obj)))
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn with_query(endpoint: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return endpoint.to_string();
    }
    let q: Vec<String> = (pairs.iter())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", q.join("&"))
}

/// A JSON body as `application/x-www-form-urlencoded`: nested objects as `a[b]=c`,
/// arrays as the ArrayFormat says.
pub fn form_body(body: &Value, format: ArrayFormat) -> String {
    let mut pairs = vec![];
    match body {
        Value::Object(obj) => {
            for (k, v) in obj {
                form_pairs(k, v, format, &mut pairs);
            }
        }
        other => pairs.push(encode(&text(other))),
    }
    pairs.join("&")
}

fn form_pairs(key: &str, v: &Value, format: ArrayFormat, out: &mut Vec<String>) {
    match v {
        Value::Object(obj) => {
            for (k, inner) in obj {
                form_pairs(&format!("{key}[{k}]"), inner, format, out);
            }
        }
        Value::Array(items) if format == ArrayFormat::Commas => {
            let joined: Vec<String> = items.iter().map(|i| encode(&text(i))).collect();
            out.push(format!("{}={}", encode(key), joined.join(",")));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let k = match format {
                    ArrayFormat::Indices => format!("{key}[{i}]"),
                    ArrayFormat::Brackets => format!("{key}[]"),
                    _ => key.to_string(),
                };
                form_pairs(&k, item, format, out);
            }
        }
        scalar => out.push(format!("{}={}", encode(key), encode(&text(scalar)))),
    }
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!("Basic {}", aws_smithy_types::base64::encode(raw.as_bytes()))
}

/// Sends within AWS's 60 seconds; no answer is `States.Http.Socket`.
async fn send(client: &signed::Client, p: Prepared) -> Result<signed::Response, Failure> {
    // Causes go to the history: the query may hold a connection's secret parameters.
    let full_url = p.url.clone();
    let url = full_url.split('?').next().unwrap_or_default().to_string();
    let mut builder = http::Request::builder()
        .method(p.method.as_str())
        .uri(p.url.as_str());
    for (name, value) in &p.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(p.body)
        .map_err(|e| runtime(format!("the request to {url} cannot be built: {e}")))?;
    let socket = |message: String| Failure::new(names::HTTP_SOCKET, message);
    match tokio::time::timeout(REQUEST_TIMEOUT, client.send_unsigned(request)).await {
        Err(_) => Err(socket(format!(
            "{url} did not answer within {} seconds",
            REQUEST_TIMEOUT.as_secs()
        ))),
        Ok(Err(signed::SendError::Failed(message))) => {
            let as_sent =
                (full_url.parse::<http::Uri>()).map_or(full_url.clone(), |u| u.to_string());
            Err(socket(
                message.replace(&as_sent, &url).replace(&full_url, &url),
            ))
        }
        Ok(Err(signed::SendError::TooLarge { bytes })) => Err(Failure::new(
            names::DATA_LIMIT_EXCEEDED,
            format!(
                "{url} answered {bytes} bytes, more than a task result may hold (oms reads at \
                 most {} bytes)",
                signed::MAX_ANSWER_BYTES
            ),
        )),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The task's result, or its failure for a non-2xx status or an answer AWS refuses
/// ("Unsupported HTTP Task responses").
pub fn result(r: &signed::Response) -> Result<Value, Failure> {
    let content_type = r.header("content-type").unwrap_or("").to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    let binary = media == "application/octet-stream"
        || ["image/", "video/", "audio/"]
            .iter()
            .any(|p| media.starts_with(p));
    if binary {
        return Err(runtime(format!(
            "the HTTP response's content-type {media} is not supported"
        )));
    }
    let body = std::str::from_utf8(&r.body)
        .map_err(|_| runtime("the HTTP response body cannot be read as a string"))?;
    let json_type = media == "application/json" || media.ends_with("+json");
    let response_body = match serde_json::from_str::<Value>(body) {
        Ok(v) if json_type => v,
        _ => Value::String(body.to_string()),
    };
    let mut headers = Map::new();
    for (name, value) in &r.headers {
        let entry = headers
            .entry(name.clone())
            .or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(values) = entry {
            values.push(Value::String(value.clone()));
        }
    }
    let status_text = http::StatusCode::from_u16(r.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let out = json!({
        "Headers": headers,
        "ResponseBody": response_body,
        "StatusCode": r.status,
        "StatusText": status_text,
    });
    if (200..300).contains(&r.status) {
        Ok(out)
    } else {
        Err(Failure::new(
            format!("States.Http.StatusCode.{}", r.status),
            out.to_string(),
        ))
    }
}

/// TestState's TRACE view of an exchange: headers as a JSON object of name to value
/// (repeated names joined with ", "), bodies as text.
pub fn inspection(
    t: &Trace,
) -> (
    Option<saga_core::api::InspectionDataRequest>,
    Option<saga_core::api::InspectionDataResponse>,
) {
    let headers = |pairs: &[(String, String)]| {
        let mut m = Map::new();
        for (name, value) in pairs {
            let joined = match m.get(name).and_then(Value::as_str) {
                Some(before) => format!("{before}, {value}"),
                None => value.clone(),
            };
            m.insert(name.clone(), Value::String(joined));
        }
        Value::Object(m).to_string()
    };
    let protocol = t
        .request
        .url
        .split("://")
        .next()
        .unwrap_or("https")
        .to_string();
    let request = saga_core::api::InspectionDataRequest {
        protocol: Some(protocol.clone()),
        method: Some(t.request.method.clone()),
        url: Some(t.request.url.clone()),
        headers: Some(headers(&t.request.headers)),
        body: Some(String::from_utf8_lossy(&t.request.body).into_owned()),
    };
    let response = t.response.as_ref().map(|r| {
        let reason = http::StatusCode::from_u16(r.status)
            .ok()
            .and_then(|s| s.canonical_reason());
        saga_core::api::InspectionDataResponse {
            protocol: Some(protocol),
            status_code: Some(r.status.to_string()),
            status_message: reason.map(str::to_string),
            headers: Some(headers(&r.headers)),
            body: Some(String::from_utf8_lossy(&r.body).into_owned()),
        }
    });
    (Some(request), response)
}

/// The connection's OAuth token: cached, or fetched with the client credentials.
async fn bearer(
    client: &signed::Client,
    connections: &Connections,
    conn: &str,
    o: &OAuth,
) -> Result<String, Failure> {
    if let Some(token) = connections.cached_token(conn).await {
        return Ok(token);
    }
    let refused = |why: String| {
        Failure::new(
            format!("{ERROR_PREFIX}InvalidConnectionState"),
            format!(
                "the connection '{conn}' has no OAuth token: {why} (oms.toml [[connections]] \
                 oauth)"
            ),
        )
    };
    let response = send(client, token_request(o))
        .await
        .map_err(|f| refused(f.cause.unwrap_or_default()))?;
    if !(200..300).contains(&response.status) {
        return Err(refused(format!(
            "{} answered {}: {}",
            o.endpoint,
            response.status,
            String::from_utf8_lossy(&response.body)
        )));
    }
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or_default();
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| refused(format!("{} answered no access_token", o.endpoint)))?;
    let expires_in_s = answer.get("expires_in").and_then(Value::as_u64);
    (connections.store_token(conn, token.to_string(), expires_in_s)).await;
    Ok(token.to_string())
}

/// The client-credentials grant: the client id and secret as Basic authorization,
/// `grant_type`, `scope` and the connection's OAuth body parameters as a form.
fn token_request(o: &OAuth) -> Prepared {
    let HttpParameters {
        headers,
        query,
        body,
    } = &o.parameters;
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    if let Some(scope) = &o.scope {
        form.push(("scope".into(), scope.clone()));
    }
    form.extend(body.iter().map(|(k, v)| (k.clone(), v.clone())));
    let form: Vec<String> = (form.iter())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    h.push((
        "authorization".into(),
        basic(&o.client_id, &o.client_secret),
    ));
    h.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Prepared {
        method: o.method.clone(),
        url: with_query(&o.endpoint, &query),
        headers: h,
        body: form.join("&").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    //! The cases in oms/tests/http_task_cases: Parameters and a connection with the
    //! request oms must send (or the failure), or an answer with the task's result.
    use super::*;
    use crate::integrations::connections::ConnectionConfig;

    fn run_case(case: &Value) -> Result<Value, Failure> {
        if let Some(r) = case.get("response") {
            let pairs = |v: &Value| -> Vec<(String, String)> {
                serde_json::from_value(v.clone()).expect("headers are [name, value] pairs")
            };
            let response = signed::Response {
                status: r["status"].as_u64().unwrap() as u16,
                headers: pairs(&r["headers"]),
                body: r["body"].as_str().unwrap().as_bytes().to_vec(),
            };
            return result(&response);
        }
        let config: ConnectionConfig = serde_json::from_value(case["connection"].clone()).unwrap();
        let connections = Connections::new(&[config]).unwrap();
        let spec = parse(&case["parameters"])?;
        let conn = connections.find(spec.connection_field, &spec.connection_arn)?;
        conn.admit(&spec.endpoint)?;
        let p = prepare(&spec, conn, "us-east-2")?;
        Ok(json!({
            "method": p.method,
            "url": p.url,
            "headers": p.headers,
            "body": String::from_utf8(p.body).unwrap(),
        }))
    }

    #[test]
    fn http_task_cases() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http_task_cases");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let got = run_case(&case);
            match (case.get("error"), got) {
                (Some(want), Err(f)) => {
                    assert_eq!(want["Error"], json!(f.error), "{name}");
                    let cause = f.cause.unwrap_or_default();
                    let part = want["CauseContains"].as_str().unwrap();
                    assert!(
                        cause.contains(part),
                        "{name}: cause {cause:?} lacks {part:?}"
                    );
                }
                (None, Ok(v)) => {
                    let want = case.get("request").or(case.get("result")).unwrap();
                    assert_eq!(&v, want, "{name}");
                }
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
            count += 1;
        }
        assert!(count >= 20, "the cases folder holds {count} cases");
    }
}
