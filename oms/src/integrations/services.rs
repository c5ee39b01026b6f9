//! The one table of AWS services oms can call from a Task state: how each is reached
//! (endpoint prefix, SigV4 signing name, wire protocol) and how its errors are named.

/// How a service speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson1.0 / awsJson1.1: `POST /`, `X-Amz-Target: TARGET_PREFIX.Action`, the
    /// Parameters as the JSON body, the JSON answer as the result.
    Json {
        version: &'static str,
        target_prefix: &'static str,
    },
    /// The Query protocol (form POST, XML answer): SNS `publish` only (sns.rs).
    Query,
    /// REST-XML: S3 `getObject` and `putObject` only (s3.rs).
    RestXml,
}

/// An optimized integration (`arn:aws:states:::NAME:action`, no `aws-sdk:`).
#[derive(Debug)]
pub struct Optimized {
    /// The name in the resource ARN.
    pub name: &'static str,
    /// The actions Step Functions optimizes for it (camelCase, as in the ARN).
    pub actions: &'static [&'static str],
    /// The errors' prefix: `DynamoDB.ConditionalCheckFailedException`.
    pub error_prefix: &'static str,
    /// Whether an error code gets an `Exception` suffix when it lacks one.
    pub suffix_exception: bool,
    /// The error when the service answered an error without a code.
    pub generic_error: &'static str,
    /// The service as the error cause names it: `(Service: AmazonDynamoDBv2; ...)`.
    pub cause_service: &'static str,
}

/// A service oms can call.
#[derive(Debug)]
pub struct Service {
    /// The name in `arn:aws:states:::aws-sdk:NAME:action`.
    pub sdk_name: &'static str,
    /// The host's first label at AWS: `https://PREFIX.REGION.amazonaws.com`.
    pub endpoint_prefix: &'static str,
    /// The SigV4 service name.
    pub signing_name: &'static str,
    pub protocol: Protocol,
    /// The aws-sdk integration's error prefix (the AWS SDK for Java 2.x client
    /// name): `DynamoDb.ResourceNotFoundException`.
    pub sdk_error_prefix: &'static str,
    pub optimized: Option<Optimized>,
}

const fn json(version: &'static str, target_prefix: &'static str) -> Protocol {
    Protocol::Json {
        version,
        target_prefix,
    }
}

/// Every service oms calls. To add an awsJson service, add a line: its target prefix
/// and JSON version are the `X-Amz-Target` and `Content-Type` its SDKs send.
pub const SERVICES: &[Service] = &[
    Service {
        sdk_name: "dynamodb",
        endpoint_prefix: "dynamodb",
        signing_name: "dynamodb",
        protocol: json("1.0", "DynamoDB_20120810"),
        sdk_error_prefix: "DynamoDb",
        optimized: Some(Optimized {
            name: "dynamodb",
            actions: &["getItem", "putItem", "updateItem", "deleteItem"],
            error_prefix: "DynamoDB",
            suffix_exception: false,
            generic_error: "DynamoDB.AmazonDynamoDBException",
            cause_service: "AmazonDynamoDBv2",
        }),
    },
    Service {
        sdk_name: "sqs",
        endpoint_prefix: "sqs",
        signing_name: "sqs",
        protocol: json("1.0", "AmazonSQS"),
        sdk_error_prefix: "Sqs",
        optimized: Some(Optimized {
            name: "sqs",
            actions: &["sendMessage"],
            error_prefix: "SQS",
            suffix_exception: true,
            generic_error: "SQS.AmazonSQSException",
            cause_service: "AmazonSQS",
        }),
    },
    Service {
        sdk_name: "sns",
        endpoint_prefix: "sns",
        signing_name: "sns",
        protocol: Protocol::Query,
        sdk_error_prefix: "Sns",
        optimized: Some(Optimized {
            name: "sns",
            actions: &["publish"],
            error_prefix: "SNS",
            suffix_exception: true,
            generic_error: "SNS.AmazonSNSException",
            cause_service: "AmazonSNS",
        }),
    },
    Service {
        sdk_name: "eventbridge",
        endpoint_prefix: "events",
        signing_name: "events",
        protocol: json("1.1", "AWSEvents"),
        sdk_error_prefix: "EventBridge",
        optimized: Some(Optimized {
            name: "events",
            actions: &["putEvents"],
            error_prefix: "EventBridge",
            suffix_exception: true,
            generic_error: "EventBridge.AmazonEventBridgeException",
            cause_service: "AmazonEventBridge",
        }),
    },
    Service {
        sdk_name: "s3",
        endpoint_prefix: "s3",
        signing_name: "s3",
        protocol: Protocol::RestXml,
        sdk_error_prefix: "S3",
        optimized: None,
    },
    Service {
        sdk_name: "sfn",
        endpoint_prefix: "states",
        signing_name: "states",
        protocol: json("1.0", "AWSStepFunctions"),
        sdk_error_prefix: "Sfn",
        optimized: None,
    },
    Service {
        sdk_name: "kinesis",
        endpoint_prefix: "kinesis",
        signing_name: "kinesis",
        protocol: json("1.1", "Kinesis_20131202"),
        sdk_error_prefix: "Kinesis",
        optimized: None,
    },
    Service {
        sdk_name: "firehose",
        endpoint_prefix: "firehose",
        signing_name: "firehose",
        protocol: json("1.1", "Firehose_20150804"),
        sdk_error_prefix: "Firehose",
        optimized: None,
    },
    Service {
        sdk_name: "cloudwatchlogs",
        endpoint_prefix: "logs",
        signing_name: "logs",
        protocol: json("1.1", "Logs_20140328"),
        sdk_error_prefix: "CloudWatchLogs",
        optimized: None,
    },
    Service {
        sdk_name: "kms",
        endpoint_prefix: "kms",
        signing_name: "kms",
        protocol: json("1.1", "TrentService"),
        sdk_error_prefix: "Kms",
        optimized: None,
    },
    Service {
        sdk_name: "secretsmanager",
        endpoint_prefix: "secretsmanager",
        signing_name: "secretsmanager",
        protocol: json("1.1", "secretsmanager"),
        sdk_error_prefix: "SecretsManager",
        optimized: None,
    },
    Service {
        sdk_name: "ssm",
        endpoint_prefix: "ssm",
        signing_name: "ssm",
        protocol: json("1.1", "AmazonSSM"),
        sdk_error_prefix: "Ssm",
        optimized: None,
    },
];

/// The service of an `aws-sdk:NAME` integration.
pub fn sdk(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.sdk_name == name)
}

/// The service of an optimized integration `NAME` (`dynamodb`, `events`, ...).
pub fn optimized(name: &str) -> Option<(&'static Service, &'static Optimized)> {
    SERVICES.iter().find_map(|s| {
        s.optimized
            .as_ref()
            .filter(|o| o.name == name)
            .map(|o| (s, o))
    })
}

/// The names `aws-sdk:` accepts, for error messages.
pub fn sdk_names() -> String {
    SERVICES
        .iter()
        .map(|s| s.sdk_name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_appears_once() {
        let mut names: Vec<_> = SERVICES.iter().map(|s| s.sdk_name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "an aws-sdk name is listed twice");
    }

    #[test]
    fn finds_optimized_integrations_by_their_arn_name() {
        let (service, o) = optimized("events").expect("events is optimized");
        assert_eq!(service.sdk_name, "eventbridge");
        assert_eq!(o.error_prefix, "EventBridge");
        assert!(optimized("eventbridge").is_none());
        assert!(sdk("events").is_none());
    }
}
