//! How a service's error answer becomes the Task's error and cause, named as Step
//! Functions names it so that Retry and Catch match as they do on AWS
//! (docs/integrations.md gives the sources).

use super::services::{Optimized, Service};
use asl::Failure;

/// An error a service answered: its code (without namespace), message, HTTP status
/// and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: Option<String>,
    pub message: String,
    pub status: u16,
    pub request_id: String,
}

/// Which kind of integration called: they name errors differently.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    Optimized(&'a Optimized),
    Sdk,
}

/// `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException` and
/// `ResourceNotFoundException:http://...` are both `ResourceNotFoundException`
/// (the awsJson protocols' rules for `__type` and `X-Amzn-ErrorType`).
pub fn sanitize_code(raw: &str) -> String {
    let no_uri = raw.split(':').next().unwrap_or(raw);
    let name = no_uri.rsplit('#').next().unwrap_or(no_uri);
    name.trim().to_string()
}

/// The error code and message of an awsJson error answer: the code from the
/// `X-Amzn-ErrorType` header or the body's `__type`/`code`, the message from
/// `message`/`Message`.
pub fn from_json(
    header_type: Option<&str>,
    body: &[u8],
    status: u16,
    request_id: &str,
) -> ServiceError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| json.get(k).and_then(serde_json::Value::as_str);
    let code = header_type
        .or_else(|| field("__type"))
        .or_else(|| field("code"))
        .map(sanitize_code)
        .filter(|c| !c.is_empty());
    let message = field("message")
        .or_else(|| field("Message"))
        .or_else(|| field("errorMessage"))
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    ServiceError {
        code,
        message,
        status,
        request_id: request_id.to_string(),
    }
}

/// An error name with the `Exception` suffix Step Functions adds to codes that
/// lack one (`NoSuchKey` is `S3.NoSuchKeyException`; a `...Fault` is an exception).
fn exception_name(code: &str) -> String {
    let base = code.strip_suffix("Fault").unwrap_or(code);
    if base.ends_with("Exception") {
        base.to_string()
    } else {
        format!("{base}Exception")
    }
}

/// The Task's failure for a service's error answer.
pub fn failure(service: &Service, kind: Kind, e: &ServiceError) -> Failure {
    match kind {
        Kind::Optimized(o) => {
            let error = match &e.code {
                Some(code) if o.suffix_exception => {
                    format!("{}.{}", o.error_prefix, exception_name(code))
                }
                Some(code) => format!("{}.{code}", o.error_prefix),
                None => o.generic_error.to_string(),
            };
            let cause = format!(
                "{} (Service: {}; Status Code: {}; Error Code: {}; Request ID: {}; Proxy: null)",
                e.message,
                o.cause_service,
                e.status,
                e.code.as_deref().unwrap_or("null"),
                e.request_id
            );
            Failure::new(error, cause)
        }
        Kind::Sdk => {
            let prefix = service.sdk_error_prefix;
            let error = match &e.code {
                Some(code) => format!("{prefix}.{}", exception_name(code)),
                None => format!("{prefix}.{prefix}Exception"),
            };
            let cause = format!(
                "{} (Service: {prefix}, Status Code: {}, Request ID: {})",
                e.message, e.status, e.request_id
            );
            Failure::new(error, cause)
        }
    }
}

/// The failure when no answer came (endpoint unreachable, no credentials): the AWS
/// SDK for Java's client-side exception, as Step Functions reports it.
pub fn client_failure(service: &Service, kind: Kind, message: String) -> Failure {
    let prefix = match kind {
        Kind::Optimized(o) => o.error_prefix,
        Kind::Sdk => service.sdk_error_prefix,
    };
    Failure::new(format!("{prefix}.SdkClientException"), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::services::{optimized, sdk};

    fn err(code: Option<&str>) -> ServiceError {
        ServiceError {
            code: code.map(str::to_string),
            message: "m".into(),
            status: 400,
            request_id: "r".into(),
        }
    }

    #[test]
    fn codes_lose_their_namespace() {
        assert_eq!(
            sanitize_code("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"),
            "ConditionalCheckFailedException"
        );
        assert_eq!(
            sanitize_code("ValidationException:http://internal.amazon.com/coral/"),
            "ValidationException"
        );
    }

    #[test]
    fn optimized_dynamodb_keeps_the_code_and_sdk_names_take_the_java_client() {
        let (ddb, o) = optimized("dynamodb").unwrap();
        let e = err(Some("ConditionalCheckFailedException"));
        let f = failure(ddb, Kind::Optimized(o), &e);
        assert_eq!(f.error, "DynamoDB.ConditionalCheckFailedException");
        assert!(f
            .cause
            .as_deref()
            .unwrap()
            .starts_with("m (Service: AmazonDynamoDBv2; Status Code: 400;"));
        let f = failure(ddb, Kind::Sdk, &e);
        assert_eq!(f.error, "DynamoDb.ConditionalCheckFailedException");
        let f = failure(ddb, Kind::Optimized(o), &err(None));
        assert_eq!(f.error, "DynamoDB.AmazonDynamoDBException");
    }

    #[test]
    fn codes_without_exception_get_the_suffix() {
        let s3 = sdk("s3").unwrap();
        assert_eq!(
            failure(s3, Kind::Sdk, &err(Some("NoSuchKey"))).error,
            "S3.NoSuchKeyException"
        );
        let sqs = sdk("sqs").unwrap();
        assert_eq!(
            failure(sqs, Kind::Sdk, &err(Some("QueueDoesNotExist"))).error,
            "Sqs.QueueDoesNotExistException"
        );
        assert_eq!(
            failure(sqs, Kind::Sdk, &err(None)).error,
            "Sqs.SqsException"
        );
    }

    #[test]
    fn a_json_error_body_gives_code_and_message() {
        let e = from_json(
            None,
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}"#,
            400,
            "id",
        );
        assert_eq!(e.code.as_deref(), Some("QueueDoesNotExist"));
        assert_eq!(e.message, "gone");
        let e = from_json(Some("Throttling:uri"), b"not json", 400, "id");
        assert_eq!(e.code.as_deref(), Some("Throttling"));
        assert_eq!(e.message, "not json");
    }
}
