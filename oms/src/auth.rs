//! Who may call `oms up`. On loopback, anyone on this machine: zero setup, as before.
//! Off loopback (or with `--require-auth`), every route but `/health` and the console's
//! page needs credentials:
//! - the Step Functions API (`X-Amz-Target`) a SigV4 signature, made the way every AWS
//!   client already signs, with the access key and secret of `[auth]` in oms.toml or of
//!   the data dir's `credentials.json`;
//! - the Orders API, admin routes and the console's calls `Authorization: Bearer TOKEN`
//!   (the console's Step Functions calls too: it has no secret key to sign with).
//!
//! The signature is checked here rather than with `aws-sigv4`: that crate signs a
//! request, choosing the headers itself, while a verifier must canonicalise exactly the
//! headers the client listed in `SignedHeaders`. The steps are AWS's published ones.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use saga_core::api::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The credentials a server accepts.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The Orders API's bearer token.
    pub token: String,
}

/// Never prints the secrets.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where generated credentials are kept, in the data dir (0600, like the databases).
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// A signature's time may differ from ours by this much, as AWS allows.
const MAX_CLOCK_SKEW_MINUTES: i64 = 15;

impl Credentials {
    /// The data dir's credentials, or new ones written there. The flag says they are
    /// new, so the caller prints them (this once only).
    pub fn load_or_create(dir: &Path) -> Result<(Credentials, bool), String> {
        let path = dir.join(CREDENTIALS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(|c| (c, false))
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = Credentials::generate();
                write_private(
                    &path,
                    &serde_json::to_vec_pretty(&fresh).unwrap_or_default(),
                )?;
                Ok((fresh, true))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn generate() -> Credentials {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Credentials {
            access_key_id: format!("OMS{}", &random()[..17].to_ascii_uppercase()),
            secret_access_key: format!("{}{}", random(), &random()[..8]),
            token: format!("oms_{}{}", random(), random()),
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Routes anyone may call: the health check and the console's pages and their scripts
/// (they hold no data; their calls carry the token the user gives them).
fn is_public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (matches!(
            path,
            "/health" | "/console" | "/console/" | "/console/dashboard"
        ) || path.starts_with("/console/vendor/"))
}

/// The middleware: lets a request through, or answers it as refused.
pub async fn guard(
    State(creds): State<Arc<Credentials>>,
    request: Request,
    next: Next,
) -> Response {
    if is_public(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
    if request.headers().contains_key("x-amz-target") && !bearer {
        return signed(&creds, request, next).await;
    }
    // The console calls the Step Functions API with the bearer token it was given: it
    // holds no secret key to sign with.
    if request.headers().contains_key("x-amz-target") {
        return match bearer_ok(&creds, request.headers()) {
            Ok(()) => next.run(request).await,
            Err(_) => crate::respond::error_response(&ApiError::unrecognized_client(
                "The security token included in the request is invalid.",
            )),
        };
    }
    match bearer_ok(&creds, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(message) => unauthorized(message),
    }
}

fn bearer_ok(creds: &Credentials, headers: &HeaderMap) -> Result<(), &'static str> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("this server requires 'Authorization: Bearer TOKEN' (docs/security.md)")?;
    if constant_time_eq(given.trim().as_bytes(), creds.token.as_bytes()) {
        Ok(())
    } else {
        Err("the bearer token is not this server's")
    }
}

fn unauthorized(message: &str) -> Response {
    let problem = oms_orders::Problem::new(401, oms_orders::code::UNAUTHORIZED, message);
    let mut response = crate::respond::problem_response(&problem);
    response.headers_mut().insert(
        "www-authenticate",
        axum::http::HeaderValue::from_static("Bearer realm=\"oms\""),
    );
    response
}

async fn signed(creds: &Credentials, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::respond::MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        // Too large or unreadable: the API answers that itself, after the check.
        Err(_) => Bytes::new(),
    };
    let now = Utc::now();
    if let Err(e) = verify_sigv4(
        creds,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &bytes,
        now,
    ) {
        return crate::respond::error_response(&e);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The parts of an `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
/// header.
struct Authorization<'a> {
    access_key: &'a str,
    scope: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (access_key, scope) = credential?.split_once('/')?;
    Some(Authorization {
        access_key,
        scope,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// Checks a request's SigV4 signature against `creds`, as AWS does, answering with
/// AWS's own errors.
pub fn verify_sigv4(
    creds: &Credentials,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::missing_authentication_token("Missing Authentication Token"))?;
    let auth = parse_authorization(header).ok_or_else(|| {
        ApiError::incomplete_signature(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' \
             parameters of AWS4-HMAC-SHA256",
        )
    })?;
    if auth.access_key != creds.access_key_id {
        return Err(ApiError::unrecognized_client(
            "The security token included in the request is invalid.",
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::incomplete_signature("The request has no X-Amz-Date header"))?;
    let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| ApiError::incomplete_signature("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'"))?
        .and_utc();
    if (now - signed_at).num_minutes().abs() > MAX_CLOCK_SKEW_MINUTES {
        return Err(ApiError::invalid_signature(format!(
            "Signature expired: {amz_date} is more than {MAX_CLOCK_SKEW_MINUTES} minutes \
             from the server's time {}",
            now.format("%Y%m%dT%H%M%SZ")
        )));
    }
    let canonical = canonical_request(method, uri, headers, auth.signed_headers, body);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        auth.scope,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let expected = hex(&hmac(
        &signing_key(&creds.secret_access_key, auth.scope),
        &to_sign,
    ));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ApiError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

fn canonical_request(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    signed_headers: &str,
    body: &[u8],
) -> String {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    query.sort_unstable();
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| collapse_spaces(v.to_str().unwrap_or_default()))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        uri.path(),
        query.join("&"),
        hex(&Sha256::digest(body))
    )
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `AWS4<secret>` HMAC'd with the scope's date, region, service and `aws4_request`.
fn signing_key(secret: &str, scope: &str) -> Vec<u8> {
    scope
        .split('/')
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac(&key, part)
        })
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            token: "t".into(),
        }
    }

    /// AWS's own SigV4 test suite case "get-vanilla": the signed request's headers, and
    /// a moment within the allowed clock skew of its date.
    fn get_vanilla() -> (HeaderMap, DateTime<Utc>) {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        let at = DateTime::parse_from_rfc3339("2015-08-30T12:40:00Z")
            .unwrap()
            .with_timezone(&Utc);
        (headers, at)
    }

    /// AWS's own SigV4 test suite case "get-vanilla": its signature must verify, and
    /// any change to what was signed must not.
    #[test]
    fn aws_test_suite_get_vanilla_verifies_and_a_changed_request_does_not() {
        let (mut headers, at) = get_vanilla();
        let uri: axum::http::Uri = "/".parse().unwrap();
        assert!(verify_sigv4(&creds(), &Method::GET, &uri, &headers, b"", at).is_ok());
        let code = |r: Result<(), ApiError>| r.unwrap_err().code.as_str();
        assert_eq!(
            code(verify_sigv4(
                &creds(),
                &Method::POST,
                &uri,
                &headers,
                b"",
                at
            )),
            "InvalidSignatureException"
        );
        assert_eq!(
            code(verify_sigv4(
                &creds(),
                &Method::GET,
                &uri,
                &headers,
                b"x",
                at
            )),
            "InvalidSignatureException"
        );
        let later = at + chrono::Duration::minutes(16);
        assert_eq!(
            code(verify_sigv4(
                &creds(),
                &Method::GET,
                &uri,
                &headers,
                b"",
                later
            )),
            "InvalidSignatureException"
        );
        let mut other = creds();
        other.access_key_id = "AKIDOTHER".into();
        assert_eq!(
            code(verify_sigv4(&other, &Method::GET, &uri, &headers, b"", at)),
            "UnrecognizedClientException"
        );
        headers.remove("authorization");
        assert_eq!(
            code(verify_sigv4(
                &creds(),
                &Method::GET,
                &uri,
                &headers,
                b"",
                at
            )),
            "MissingAuthenticationTokenException"
        );
    }
}
