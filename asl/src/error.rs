//! Error names Step Functions defines, in one place.

/// The reserved error names of the `States.` namespace.
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
    pub const RUNTIME: &str = "States.Runtime";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// An HTTP Task (`arn:aws:states:::http:invoke`) got no answer.
    pub const HTTP_SOCKET: &str = "States.Http.Socket";
    /// What Step Functions reports when a Lambda function it calls does not exist, and
    /// when Lambda itself (not the function) fails; retriers name them.
    pub const LAMBDA_RESOURCE_NOT_FOUND: &str = "Lambda.ResourceNotFoundException";
    pub const LAMBDA_SERVICE_EXCEPTION: &str = "Lambda.ServiceException";

    /// The predefined names AWS documents ("Error names" in the Step Functions guide).
    /// ErrorEquals is not limited to them: AWS accepts any `States.` name there, as HTTP
    /// Tasks fail with `States.Http.StatusCode.NNN` and a Fail state may throw any name,
    /// and definitions deployed on AWS catch both.
    pub const PREDEFINED: &[&str] = &[
        ALL,
        HEARTBEAT_TIMEOUT,
        TIMEOUT,
        TASK_FAILED,
        PERMISSIONS,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        QUERY_EVALUATION_ERROR,
        BRANCH_FAILED,
        NO_CHOICE_MATCHED,
        INTRINSIC_FAILURE,
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        ITEM_READER_FAILED,
        RESULT_WRITER_FAILED,
        RUNTIME,
        DATA_LIMIT_EXCEEDED,
        HTTP_SOCKET,
    ];
}

/// An error as a state machine sees it: the `Error` and `Cause` of a failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub error: String,
    pub cause: Option<String>,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }
    pub fn runtime(cause: impl Into<String>) -> Self {
        Failure::new(names::RUNTIME, cause)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(c) => write!(f, "{}: {}", self.error, c),
            None => f.write_str(&self.error),
        }
    }
}

impl std::error::Error for Failure {}
