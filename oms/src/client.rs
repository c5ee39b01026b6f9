//! The client of a running `oms up`'s two APIs (the Orders API and the Step Functions
//! API), shared by the order CLI (`cli.rs`) and `oms load` (`load.rs`): over HTTP, or
//! in this process to the same routes built over a deployed stack.

use clap::ValueEnum;
use serde_json::Value;
use std::process::ExitCode;
use std::sync::Arc;

// How the order commands print: tables for people, or JSON.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
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
                let body = axum::body::Body::from(body.unwrap_or_default());
                let resp = in_process(router, method.as_str(), path, headers, body).await?;
                let status = resp.status().as_u16();
                let bytes = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
            }
        }
    }

    /// Sends the file at `file` as the body of a POST, read as it goes (`sent` counts
    /// its bytes), and returns the status and the answer's body as a stream.
    pub(crate) async fn upload(
        &self,
        path: &str,
        headers: &[(&str, String)],
        file: &std::path::Path,
        sent: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<(u16, Chunks), String> {
        let opened = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let body = file_chunks(opened, sent);
        match &self.transport {
            Transport::Http { http, endpoint } => {
                let url = format!("{endpoint}{path}");
                let mut req = http.post(&url);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let resp = req
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
                    .map_err(|e| {
                        format!("cannot reach {url}: {e} (is `oms up` running? --endpoint)")
                    })?;
                Ok(http_chunks(resp))
            }
            Transport::InProcess(router) => {
                let body = axum::body::Body::from_stream(body);
                let resp = in_process(router, "POST", path, headers, body).await?;
                Ok(in_process_chunks(resp))
            }
        }
    }

    /// A GET whose answer is read as it arrives (`GET /events`): its status and body.
    pub(crate) async fn stream(&self, path: &str) -> Result<(u16, Chunks), String> {
        match &self.transport {
            Transport::Http { http, endpoint } => {
                let url = format!("{endpoint}{path}");
                let resp = http.get(&url).send().await.map_err(|e| {
                    format!("cannot reach {url}: {e} (is `oms up` running? --endpoint)")
                })?;
                Ok(http_chunks(resp))
            }
            Transport::InProcess(router) => {
                let resp = in_process(router, "GET", path, &[], axum::body::Body::empty()).await?;
                Ok(in_process_chunks(resp))
            }
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: Option<String>,
    ) -> Result<(u16, Value), String> {
        let mut headers = extra.to_vec();
        if body.is_some() {
            headers.push(("content-type", "application/json".to_string()));
        }
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
        self.ok_with(method, path, &[], body).await
    }

    /// [`Client::ok`] with `extra` request headers.
    pub(crate) async fn ok_with(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method, path, extra, body).await?;
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

    pub(crate) async fn sfn(&self, op: &str, body: Value) -> Result<Value, String> {
        let headers = [
            ("x-amz-target", format!("AWSStepFunctions.{op}")),
            ("content-type", crate::respond::CONTENT_TYPE.to_string()),
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

/// A JSON value as a table cell: strings bare, null as `-`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `f` with a client of `target` on a runtime of its own.
pub(crate) fn with_client<F, Fut>(target: Target, f: F) -> Result<ExitCode, String>
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

/// An answer's body, as it arrives.
/// An HTTP answer's status, and its body as it arrives.
fn http_chunks(resp: reqwest::Response) -> (u16, Chunks) {
    use futures_util::StreamExt;
    let status = resp.status().as_u16();
    let chunks = resp.bytes_stream().map(|c| c.map_err(|e| e.to_string()));
    (status, Box::pin(chunks))
}

/// An in-process answer's status, and its body as it arrives.
fn in_process_chunks(resp: axum::response::Response) -> (u16, Chunks) {
    use futures_util::StreamExt;
    let status = resp.status().as_u16();
    let chunks = resp
        .into_body()
        .into_data_stream()
        .map(|c| c.map_err(|e| e.to_string()));
    (status, Box::pin(chunks))
}

pub(crate) type Chunks =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<axum::body::Bytes, String>> + Send>>;

/// A file's bytes in chunks of 64 KiB, counted into `sent` as they are read.
fn file_chunks(
    file: tokio::fs::File,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(file, move |mut file| {
        let sent = sent.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 64 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(Some((axum::body::Bytes::from(buf), file)))
        }
    })
}

/// One request answered by the server's routes in this process (`--backend aws`).
async fn in_process(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: axum::body::Body,
) -> Result<axum::response::Response, String> {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    router.clone().oneshot(req).await.map_err(|e| e.to_string())
}
