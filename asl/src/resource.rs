//! Task `Resource` ARNs: what a Task state calls and how its result is shaped.

/// How Step Functions waits for a service integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pattern {
    RequestResponse,
    /// `.sync` / `.sync:2`: run a job to completion.
    Sync,
    /// `.waitForTaskToken`: hand out a token and wait for SendTaskSuccess/Failure.
    WaitForTaskToken,
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
    /// `aws-sdk:SERVICE:ACTION`.
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
            "states" if parts[3].is_empty() && parts[4].is_empty() => {
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
}

fn split_pattern(s: &str) -> (&str, Pattern) {
    if let Some(base) = s.strip_suffix(".waitForTaskToken") {
        (base, Pattern::WaitForTaskToken)
    } else if let Some(base) = s
        .strip_suffix(".sync:2")
        .or_else(|| s.strip_suffix(".sync"))
    {
        (base, Pattern::Sync)
    } else {
        (s, Pattern::RequestResponse)
    }
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
        assert!(Target::parse("not-an-arn").is_err());
        assert!(Target::parse("arn:aws:states:::lambda").is_err());
    }
}
