//! Task `Resource` ARNs: what a Task state calls and how its result is shaped.

/// How Step Functions waits for a service integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pattern {
    RequestResponse,
    /// `.sync`: run a job to completion; for `states:startExecution` the child's Input
    /// and Output come back as JSON text.
    Sync,
    /// `.sync:2`: as `.sync`, but the child's Input and Output come back as JSON.
    Sync2,
    /// `.waitForTaskToken`: hand out a token and wait for SendTaskSuccess/Failure.
    WaitForTaskToken,
}

impl Pattern {
    /// The suffix the resource ARN carries for this pattern.
    pub fn suffix(self) -> &'static str {
        match self {
            Pattern::RequestResponse => "",
            Pattern::Sync => ".sync",
            Pattern::Sync2 => ".sync:2",
            Pattern::WaitForTaskToken => ".waitForTaskToken",
        }
    }

    /// Both `.sync` forms: the task waits for the job to end.
    pub fn is_sync(self) -> bool {
        matches!(self, Pattern::Sync | Pattern::Sync2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`: the effective input is
    /// the payload and the function's return value is the result.
    LambdaFunction { arn: String },
    /// `arn:aws:states:::lambda:invoke`: Parameters carry FunctionName and Payload, and the
    /// result is Lambda's Invoke response (Payload, StatusCode, ...).
    LambdaInvoke { pattern: Pattern },
    /// `arn:aws:states:REGION:ACCOUNT:activity:NAME`, polled by workers.
    Activity { arn: String },
    /// Any other integration, `arn:aws:states:::SERVICE:ACTION[.pattern]`, including
    /// `aws-sdk:SERVICE:ACTION`. AWS also accepts (and exports) the region and account
    /// filled in, `arn:aws:states:REGION:ACCOUNT:SERVICE:ACTION`: the same integration.
    Service {
        service: String,
        action: String,
        pattern: Pattern,
    },
}

impl Target {
    pub fn parse(resource: &str) -> Result<Target, String> {
        let parts: Vec<&str> = resource.splitn(6, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" || parts[1].is_empty() {
            return Err(format!("'{resource}' is not a valid resource ARN"));
        }
        match parts[2] {
            "lambda" if parts[5].starts_with("function:") => Ok(Target::LambdaFunction {
                arn: resource.to_string(),
            }),
            "states" if parts[5].starts_with("activity:") => Ok(Target::Activity {
                arn: resource.to_string(),
            }),
            "states" => {
                let rest = parts[5];
                let (integration, pattern) = split_pattern(rest);
                let (service, action) = match integration.strip_prefix("aws-sdk:") {
                    Some(sdk) => match sdk.split_once(':') {
                        Some((svc, act)) => (format!("aws-sdk:{svc}"), act.to_string()),
                        None => return Err(format!("'{resource}' names no aws-sdk action")),
                    },
                    None => match integration.split_once(':') {
                        Some((svc, act)) => (svc.to_string(), act.to_string()),
                        None => return Err(format!("'{resource}' names no service action")),
                    },
                };
                if service == "lambda" && action == "invoke" {
                    Ok(Target::LambdaInvoke { pattern })
                } else {
                    Ok(Target::Service {
                        service,
                        action,
                        pattern,
                    })
                }
            }
            _ => Err(format!(
                "'{resource}' is not a resource Step Functions can call"
            )),
        }
    }

    pub fn pattern(&self) -> Pattern {
        match self {
            Target::LambdaInvoke { pattern } | Target::Service { pattern, .. } => *pattern,
            _ => Pattern::RequestResponse,
        }
    }

    /// The `resourceType` and `resource` of the history's Task events, as AWS records
    /// them: the service, and the action with its pattern suffix (`lambda`,
    /// `invoke.waitForTaskToken`; `states`, `startExecution.sync:2`; `aws-sdk:s3`,
    /// `getObject`), whether or not the ARN carries a region and account. An activity
    /// gives `activity` and its ARN, a Lambda function ARN `lambda` and its ARN (their
    /// own event types carry the ARN as written).
    pub fn history_names(&self, resource: &str) -> (String, String) {
        match self {
            Target::Activity { .. } => ("activity".into(), resource.to_string()),
            Target::LambdaFunction { .. } => ("lambda".into(), resource.to_string()),
            Target::LambdaInvoke { pattern } => {
                ("lambda".into(), format!("invoke{}", pattern.suffix()))
            }
            Target::Service {
                service,
                action,
                pattern,
            } => (service.clone(), format!("{action}{}", pattern.suffix())),
        }
    }
}

/// Splits the pattern suffix off `SERVICE:ACTION[.pattern]`; `.sync:2` is tried before
/// `.sync`, whose `:2` would otherwise be read as part of the action.
pub(crate) fn split_pattern(s: &str) -> (&str, Pattern) {
    for p in [Pattern::Sync2, Pattern::Sync, Pattern::WaitForTaskToken] {
        if let Some(base) = s.strip_suffix(p.suffix()) {
            return (base, p);
        }
    }
    (s, Pattern::RequestResponse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_kind() {
        assert!(matches!(
            Target::parse("arn:aws:lambda:us-east-1:1:function:f").unwrap(),
            Target::LambdaFunction { .. }
        ));
        assert_eq!(
            Target::parse("arn:aws:states:::lambda:invoke.waitForTaskToken").unwrap(),
            Target::LambdaInvoke {
                pattern: Pattern::WaitForTaskToken
            }
        );
        assert!(matches!(
            Target::parse("arn:aws:states:us-east-1:1:activity:a").unwrap(),
            Target::Activity { .. }
        ));
        assert_eq!(
            Target::parse("arn:aws:states:::aws-sdk:s3:listBuckets").unwrap(),
            Target::Service {
                service: "aws-sdk:s3".into(),
                action: "listBuckets".into(),
                pattern: Pattern::RequestResponse
            }
        );
        // As AWS accepts and exports them: the same integrations, region and account given.
        assert_eq!(
            Target::parse("arn:aws:states:us-east-1:123456789012:lambda:invoke").unwrap(),
            Target::LambdaInvoke {
                pattern: Pattern::RequestResponse
            }
        );
        assert_eq!(
            Target::parse("arn:aws:states:us-east-1:123456789012:aws-sdk:s3:getObject").unwrap(),
            Target::Service {
                service: "aws-sdk:s3".into(),
                action: "getObject".into(),
                pattern: Pattern::RequestResponse
            }
        );
        assert!(Target::parse("not-an-arn").is_err());
        assert!(Target::parse("arn:aws:states:::lambda").is_err());
    }

    #[test]
    fn sync_and_sync2_differ_and_keep_their_suffix_in_history() {
        let two = "arn:aws:states:::states:startExecution.sync:2";
        let one = "arn:aws:states:::states:startExecution.sync";
        let t2 = Target::parse(two).unwrap();
        let t1 = Target::parse(one).unwrap();
        assert_eq!(t2.pattern(), Pattern::Sync2);
        assert_eq!(t1.pattern(), Pattern::Sync);
        assert!(t1.pattern().is_sync() && t2.pattern().is_sync());
        assert_eq!(
            t2.history_names(two),
            ("states".to_string(), "startExecution.sync:2".to_string())
        );
        assert_eq!(
            t1.history_names(one),
            ("states".to_string(), "startExecution.sync".to_string())
        );
        let wftt = "arn:aws:states:::lambda:invoke.waitForTaskToken";
        assert_eq!(
            Target::parse(wftt).unwrap().history_names(wftt),
            ("lambda".to_string(), "invoke.waitForTaskToken".to_string())
        );
    }
}
