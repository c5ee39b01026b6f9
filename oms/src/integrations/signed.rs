//! One SigV4-signed HTTP exchange with an AWS service: credentials from aws-config's
//! standard chain (cached until shortly before they expire), the signature from
//! aws-sigv4, the HTTPS connector the AWS SDK crates use.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use axum::http;
use std::time::{Duration, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// How long before their expiry cached credentials are renewed.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A service that accepted the connection but does not answer in this long is down.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer read: four times the largest task result (asl::eval's
/// MAX_PAYLOAD_BYTES), so an answer that could never become a result (a large S3
/// object) is refused from its Content-Length instead of being held in memory.
pub const MAX_ANSWER_BYTES: u64 = 4 * asl::eval::MAX_PAYLOAD_BYTES as u64;

/// Why no usable answer came.
#[derive(Debug)]
pub enum SendError {
    /// Not reached, not signed, or the answer broke off: the message says which.
    Failed(String),
    /// The answer's Content-Length is over [`MAX_ANSWER_BYTES`].
    TooLarge { bytes: u64 },
}

impl From<String> for SendError {
    fn from(message: String) -> Self {
        SendError::Failed(message)
    }
}

/// A request to sign and send.
pub struct Request {
    pub method: &'static str,
    /// Absolute and already percent-encoded.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub signing_name: &'static str,
    pub region: String,
    /// S3 signs the payload hash as a header and its paths as they are.
    pub s3: bool,
}

/// A service's answer, read whole.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request id services answer with, for error causes.
    pub fn request_id(&self) -> String {
        self.header("x-amzn-requestid")
            .or_else(|| self.header("x-amz-request-id"))
            .unwrap_or("null")
            .to_string()
    }
}

pub struct Client {
    connector: OnceCell<SharedHttpConnector>,
    provider: OnceCell<Option<SharedCredentialsProvider>>,
    credentials: Mutex<Option<Credentials>>,
}

impl Client {
    /// Nothing is loaded until the first call: `oms up` without integrations never
    /// reads AWS configuration.
    pub fn new() -> Client {
        Client {
            connector: OnceCell::new(),
            provider: OnceCell::new(),
            credentials: Mutex::new(None),
        }
    }

    /// Signs and sends; `Err` when no usable answer came.
    pub async fn send(&self, request: Request) -> Result<Response, SendError> {
        let credentials = self.credentials().await?;
        let signed = signed_request(request, credentials)?;
        self.exchange(signed).await
    }

    /// Sends a request as it is (HTTP Tasks sign nothing) over the same connector, and
    /// reads the whole answer; `Err` when no usable answer came.
    pub async fn send_unsigned(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<Response, SendError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, SdkBody::from(body));
        let request =
            HttpRequest::try_from(request).map_err(|e| format!("building the request: {e}"))?;
        self.exchange(request).await
    }

    async fn exchange(&self, request: HttpRequest) -> Result<Response, SendError> {
        let connector = self.connector().await?;
        let uri = request.uri().to_string();
        let response = connector
            .call(request)
            .await
            .map_err(|e| format!("cannot reach {uri}: {}", error_chain(&e)))?;
        let declared_bytes = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(bytes) = declared_bytes.filter(|b| *b > MAX_ANSWER_BYTES) {
            return Err(SendError::TooLarge { bytes });
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let body = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {uri}: {}", error_chain(&e)))?
            .into_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn connector(&self) -> Result<&SharedHttpConnector, String> {
        self.connector
            .get_or_try_init(|| async {
                let settings = HttpConnectorSettings::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build();
                let sleep = aws_smithy_async::rt::sleep::default_async_sleep();
                aws_smithy_http_client::default_connector(&settings, sleep)
                    .ok_or_else(|| "this build has no HTTPS connector".to_string())
            })
            .await
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let mut cached = self.credentials.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let provider = self
            .provider
            .get_or_init(|| async {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await
                    .credentials_provider()
            })
            .await
            .as_ref()
            .ok_or_else(|| "no AWS credentials provider is configured".to_string())?;
        let c = provider.provide_credentials().await.map_err(|e| {
            format!(
                "no AWS credentials from the standard chain (AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, container or instance role): {}",
                error_chain(&e)
            )
        })?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// Whether credentials stay valid long enough for a call.
fn fresh(c: &Credentials) -> bool {
    c.expiry()
        .is_none_or(|t| t > SystemTime::now() + CREDENTIALS_MARGIN)
}

/// An error with its sources, which hold the useful part (connection refused, ...).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The request with its Host and SigV4 headers.
fn signed_request(r: Request, credentials: Credentials) -> Result<HttpRequest, String> {
    let uri: http::Uri = r
        .url
        .parse()
        .map_err(|e| format!("'{}' is not a URL: {e}", r.url))?;
    let host = uri
        .authority()
        .ok_or_else(|| format!("'{}' names no host", r.url))?
        .to_string();
    let mut headers = r.headers;
    headers.push(("host".to_string(), host));
    let mut settings = SigningSettings::default();
    if r.s3 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let identity = credentials.into();
    let params: aws_sigv4::http_request::SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(&r.region)
        .name(r.signing_name)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let signable = SignableRequest::new(
        r.method,
        r.url.as_str(),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(&r.body),
    )
    .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let mut builder = http::Request::builder().method(r.method).uri(uri);
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(SdkBody::from(r.body))
        .map_err(|e| format!("building the request: {e}"))?;
    HttpRequest::try_from(request).map_err(|e| format!("building the request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_the_service_region_and_date() {
        let request = Request {
            method: "POST",
            url: "http://127.0.0.1:8000/".into(),
            headers: vec![("x-amz-target".into(), "DynamoDB_20120810.GetItem".into())],
            body: b"{}".to_vec(),
            signing_name: "dynamodb",
            region: "eu-west-1".into(),
            s3: false,
        };
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let signed = signed_request(request, creds).unwrap();
        let auth = signed.headers().get("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/eu-west-1/dynamodb/aws4_request"));
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-target"));
        assert_eq!(signed.headers().get("host"), Some("127.0.0.1:8000"));
    }

    #[test]
    fn s3_requests_carry_the_payload_hash() {
        let request = Request {
            method: "PUT",
            url: "http://127.0.0.1:5000/bucket/key".into(),
            headers: vec![],
            body: b"".to_vec(),
            signing_name: "s3",
            region: "us-east-1".into(),
            s3: true,
        };
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let signed = signed_request(request, creds).unwrap();
        assert_eq!(
            signed.headers().get("x-amz-content-sha256"),
            // The SHA-256 of nothing.
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}
