//! Which Task `Resource` ARNs Step Functions recognises.
//!
//! AWS checks a resource against the integrations it knows at create time, so an
//! unknown optimized-integration action (e.g. `dynamodb:query`, which exists only
//! through `aws-sdk:dynamodb:query`) is a definition error, not a runtime one.

use crate::resource::split_pattern;
pub(super) use crate::resource::Pattern;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resource {
    Lambda,
    Activity,
    Integration { pattern: Pattern },
}

const RR: u8 = 1;
const SYNC: u8 = 2;
const SYNC2: u8 = 4;
const WFTT: u8 = 8;

/// Optimized integrations: service, action, and the patterns each supports.
const OPTIMIZED: &[(&str, &str, u8)] = &[
    ("lambda", "invoke", RR | WFTT),
    ("sns", "publish", RR | WFTT),
    ("sqs", "sendMessage", RR | WFTT),
    ("dynamodb", "getItem", RR),
    ("dynamodb", "putItem", RR),
    ("dynamodb", "updateItem", RR),
    ("dynamodb", "deleteItem", RR),
    ("states", "startExecution", RR | SYNC | SYNC2 | WFTT),
    ("events", "putEvents", RR | WFTT),
    ("ecs", "runTask", RR | SYNC | WFTT),
    ("batch", "submitJob", RR | SYNC | WFTT),
    ("glue", "startJobRun", RR | SYNC | WFTT),
    ("databrew", "startJobRun", RR | SYNC),
    ("http", "invoke", RR),
    ("apigateway", "invoke", RR | WFTT),
    ("athena", "startQueryExecution", RR | SYNC),
    ("athena", "stopQueryExecution", RR),
    ("athena", "getQueryExecution", RR),
    ("athena", "getQueryResults", RR),
    ("codebuild", "startBuild", RR | SYNC),
    ("codebuild", "stopBuild", RR),
    ("codebuild", "batchDeleteBuilds", RR),
    ("codebuild", "batchGetReports", RR),
    ("codebuild", "startBuildBatch", RR | SYNC),
    ("codebuild", "stopBuildBatch", RR),
    ("codebuild", "retryBuildBatch", RR | SYNC),
    ("codebuild", "deleteBuildBatch", RR),
    ("eks", "createCluster", RR | SYNC),
    ("eks", "deleteCluster", RR | SYNC),
    ("eks", "createFargateProfile", RR | SYNC),
    ("eks", "deleteFargateProfile", RR | SYNC),
    ("eks", "createNodegroup", RR | SYNC),
    ("eks", "deleteNodegroup", RR | SYNC),
    ("eks", "runJob", RR | SYNC),
    ("eks", "call", RR),
    ("elasticmapreduce", "createCluster", RR | SYNC),
    ("elasticmapreduce", "terminateCluster", RR | SYNC),
    ("elasticmapreduce", "addStep", RR | SYNC),
    ("elasticmapreduce", "cancelStep", RR),
    ("elasticmapreduce", "setClusterTerminationProtection", RR),
    ("elasticmapreduce", "modifyInstanceFleetByName", RR),
    ("elasticmapreduce", "modifyInstanceGroupByName", RR),
    ("emr-containers", "startJobRun", RR | SYNC),
    ("emr-containers", "createVirtualCluster", RR),
    ("emr-containers", "deleteVirtualCluster", RR | SYNC),
    ("emr-serverless", "createApplication", RR | SYNC),
    ("emr-serverless", "startApplication", RR | SYNC),
    ("emr-serverless", "stopApplication", RR | SYNC),
    ("emr-serverless", "deleteApplication", RR | SYNC),
    ("emr-serverless", "startJobRun", RR | SYNC),
    ("emr-serverless", "cancelJobRun", RR | SYNC),
    ("sagemaker", "createTrainingJob", RR | SYNC),
    ("sagemaker", "createTransformJob", RR | SYNC),
    ("sagemaker", "createProcessingJob", RR | SYNC),
    ("sagemaker", "createHyperParameterTuningJob", RR | SYNC),
    ("sagemaker", "createLabelingJob", RR | SYNC),
    ("sagemaker", "createModel", RR),
    ("sagemaker", "createEndpointConfig", RR),
    ("sagemaker", "createEndpoint", RR),
    ("sagemaker", "updateEndpoint", RR),
    ("mediaconvert", "createJob", RR | SYNC),
    ("bedrock", "invokeModel", RR),
    ("bedrock", "createModelCustomizationJob", RR | SYNC),
];

const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"];

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 140
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Classifies a Task resource, or `None` when AWS would not recognise it.
pub(super) fn classify(arn: &str) -> Option<Resource> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if !PARTITIONS.contains(&partition) {
        return None;
    }
    match service {
        "lambda" => {
            if !is_region(region) || !is_account(account) {
                return None;
            }
            let f = rest.strip_prefix("function:")?;
            let mut fp = f.split(':');
            let name = fp.next()?;
            let qualifier = fp.next();
            let ok = is_name(name)
                && qualifier.is_none_or(|q| q == "$LATEST" || is_name(q))
                && fp.next().is_none();
            ok.then_some(Resource::Lambda)
        }
        "states" if rest.starts_with("activity:") => {
            let name = rest.strip_prefix("activity:")?;
            (is_region(region) && is_account(account) && is_name(name))
                .then_some(Resource::Activity)
        }
        // An integration, written `arn:aws:states:::SERVICE:ACTION` or with the region and
        // account filled in, as AWS also accepts and exports it.
        "states" if region.is_empty() && account.is_empty() => integration(rest),
        "states" if is_region(region) && is_account(account) => integration(rest),
        _ => None,
    }
}

/// `SERVICE:ACTION[.pattern]` of a `states` ARN, or `None` when AWS has no such
/// integration (or not with that pattern).
fn integration(rest: &str) -> Option<Resource> {
    let (head, pattern) = split_pattern(rest);
    if let Some(sdk) = head.strip_prefix("aws-sdk:") {
        // The SDK integrations cover every service API; AWS only refuses `.sync` there.
        let (svc, action) = sdk.split_once(':')?;
        let svc_ok = !svc.is_empty()
            && svc
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let action_ok = action.starts_with(|c: char| c.is_ascii_lowercase())
            && action.bytes().all(|b| b.is_ascii_alphanumeric());
        let pattern_ok = matches!(
            pattern,
            Pattern::RequestResponse | Pattern::WaitForTaskToken
        );
        return (svc_ok && action_ok && pattern_ok).then_some(Resource::Integration { pattern });
    }
    let (svc, action) = head.split_once(':')?;
    let bit = match pattern {
        Pattern::RequestResponse => RR,
        Pattern::Sync => SYNC,
        Pattern::Sync2 => SYNC2,
        Pattern::WaitForTaskToken => WFTT,
    };
    OPTIMIZED
        .iter()
        .any(|&(s, a, pats)| s == svc && a == action && pats & bit != 0)
        .then_some(Resource::Integration { pattern })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_common_shapes() {
        assert_eq!(
            classify("arn:aws:lambda:us-east-1:111111111111:function:f"),
            Some(Resource::Lambda)
        );
        assert_eq!(
            classify("arn:aws:lambda:us-east-1:111111111111:function:f:$LATEST"),
            Some(Resource::Lambda)
        );
        assert_eq!(
            classify("arn:aws:lambda:us-east-1:111111111111:function:f:a:b"),
            None
        );
        assert_eq!(
            classify("arn:aws:states:us-east-1:111111111111:activity:a"),
            Some(Resource::Activity)
        );
        assert!(classify("arn:aws:states:::lambda:invoke").is_some());
        assert!(classify("arn:aws:states:::states:startExecution.sync:2").is_some());
        assert!(classify("arn:aws:states:::aws-sdk:dynamodb:query").is_some());
        assert!(classify("arn:aws:states:::dynamodb:query").is_none());
        assert!(classify("arn:aws:states:::sns:publish.sync").is_none());
        assert!(classify("not an arn").is_none());
    }
}
