//! The Step Functions API (2016-11-23) as Rust types, and the [`StepFunctions`] trait
//! every backend implements: the durable runtime in-process, AWS through its SDK.
//!
//! Shapes follow the service model member for member: JSON names are the model's
//! (`camelCase`), optional members are `Option`s left out when `None`, timestamps are
//! epoch seconds as JSON numbers ([`epoch_seconds`]). As on the wire, executions' inputs
//! and outputs are JSON *strings*, never objects. Constraints (lengths, ranges, ARN
//! formats) are the backend's to check; only "required" and enum membership are
//! enforced here, by deserialization.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------

/// Timestamps as the awsJson protocol sends them: seconds since the epoch, a JSON
/// number with a fractional part (millisecond precision, as AWS sends).
pub mod epoch_seconds {
    use chrono::{DateTime, Utc};
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn to_f64(t: &DateTime<Utc>) -> f64 {
        t.timestamp_millis() as f64 / 1000.0
    }

    pub fn from_f64(secs: f64) -> Option<DateTime<Utc>> {
        if !secs.is_finite() {
            return None;
        }
        let millis = (secs * 1000.0).round();
        if millis.abs() > i64::MAX as f64 {
            return None;
        }
        DateTime::from_timestamp_millis(millis as i64)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to_f64(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let secs = f64::deserialize(d)?;
        from_f64(secs).ok_or_else(|| D::Error::custom(format!("timestamp out of range: {secs}")))
    }

    /// The same for `Option<DateTime<Utc>>` (use with `default` and
    /// `skip_serializing_if = "Option::is_none"`).
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------

/// Marks a deserialization error raised for a value outside an enum's set, so that
/// `dispatch` can word it as AWS does ("Member must satisfy enum value set: [...]").
/// The message is `ENUM_ERROR_MARK value ENUM_ERROR_MARK A, B, C`.
pub const ENUM_ERROR_MARK: &str = "\u{1}enum\u{1}";

macro_rules! api_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every wire value, in the model's order.
            pub const VALUES: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    <D::Error as serde::de::Error>::custom(format!(
                        "{ENUM_ERROR_MARK}{s}{ENUM_ERROR_MARK}{}",
                        Self::VALUES.join(", ")
                    ))
                })
            }
        }
    };
}

api_enum!(StateMachineType { #[default] Standard = "STANDARD", Express = "EXPRESS" });
api_enum!(StateMachineStatus { #[default] Active = "ACTIVE", Deleting = "DELETING" });
api_enum!(ExecutionStatus {
    #[default] Running = "RUNNING",
    Succeeded = "SUCCEEDED",
    Failed = "FAILED",
    TimedOut = "TIMED_OUT",
    Aborted = "ABORTED",
    PendingRedrive = "PENDING_REDRIVE",
});
impl ExecutionStatus {
    /// The statuses RedriveExecution takes an execution from (a Standard one).
    pub fn is_redrivable(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Failed | ExecutionStatus::Aborted | ExecutionStatus::TimedOut
        )
    }
}

api_enum!(SyncExecutionStatus { #[default] Succeeded = "SUCCEEDED", Failed = "FAILED", TimedOut = "TIMED_OUT" });
api_enum!(ExecutionRedriveStatus {
    #[default] Redrivable = "REDRIVABLE",
    NotRedrivable = "NOT_REDRIVABLE",
    RedrivableByMapRun = "REDRIVABLE_BY_MAP_RUN",
});
api_enum!(ExecutionRedriveFilter { #[default] Redriven = "REDRIVEN", NotRedriven = "NOT_REDRIVEN" });
api_enum!(IncludedData { #[default] AllData = "ALL_DATA", MetadataOnly = "METADATA_ONLY" });
api_enum!(LogLevel { All = "ALL", Error = "ERROR", Fatal = "FATAL", #[default] Off = "OFF" });
api_enum!(EncryptionType { #[default] AwsOwnedKey = "AWS_OWNED_KEY", CustomerManagedKmsKey = "CUSTOMER_MANAGED_KMS_KEY" });
api_enum!(ValidateStateMachineDefinitionSeverity { #[default] Error = "ERROR", Warning = "WARNING" });
api_enum!(ValidateStateMachineDefinitionResultCode { #[default] Ok = "OK", Fail = "FAIL" });
api_enum!(InspectionLevel { #[default] Info = "INFO", Debug = "DEBUG", Trace = "TRACE" });
api_enum!(TestExecutionStatus {
    #[default] Succeeded = "SUCCEEDED",
    Failed = "FAILED",
    Retriable = "RETRIABLE",
    CaughtError = "CAUGHT_ERROR",
});
api_enum!(MockResponseValidationMode { #[default] Strict = "STRICT", Present = "PRESENT", None = "NONE" });

// ---------------------------------------------------------------------------------------
// Shared structures
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggingConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_execution_data: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<LogDestination>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logs_log_group: Option<CloudWatchLogsLogGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchLogsLogGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_data_key_reuse_period_seconds: Option<i32>,
    #[serde(rename = "type")]
    pub r#type: EncryptionType,
}

/// `inputDetails` / `outputDetails` of DescribeExecution and StartSyncExecution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchEventsExecutionDataDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BillingDetails {
    #[serde(
        rename = "billedMemoryUsedInMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub billed_memory_used_in_mb: Option<i64>,
    #[serde(
        rename = "billedDurationInMilliseconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub billed_duration_in_milliseconds: Option<i64>,
}

/// State name to the variables it references (DescribeStateMachine's `variableReferences`).
pub type VariableReferences = BTreeMap<String, Vec<String>>;

// ---------------------------------------------------------------------------------------
// State machines
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStateMachineInput {
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<StateMachineType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_configuration: Option<LoggingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing_configuration: Option<TracingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStateMachineOutput {
    pub state_machine_arn: String,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_version_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStateMachineInput {
    pub state_machine_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_configuration: Option<LoggingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing_configuration: Option<TracingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStateMachineOutput {
    #[serde(with = "epoch_seconds")]
    pub update_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_version_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeStateMachineInput {
    pub state_machine_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_data: Option<IncludedData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeStateMachineOutput {
    pub state_machine_arn: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StateMachineStatus>,
    pub definition: String,
    pub role_arn: String,
    #[serde(rename = "type")]
    pub r#type: StateMachineType,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_configuration: Option<LoggingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing_configuration: Option<TracingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable_references: Option<VariableReferences>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListStateMachinesInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListStateMachinesOutput {
    pub state_machines: Vec<StateMachineListItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateMachineListItem {
    pub state_machine_arn: String,
    pub name: String,
    #[serde(rename = "type")]
    pub r#type: StateMachineType,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteStateMachineInput {
    pub state_machine_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteStateMachineOutput {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateStateMachineDefinitionInput {
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<StateMachineType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<ValidateStateMachineDefinitionSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateStateMachineDefinitionOutput {
    pub result: ValidateStateMachineDefinitionResultCode,
    pub diagnostics: Vec<ValidateStateMachineDefinitionDiagnostic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateStateMachineDefinitionDiagnostic {
    pub severity: ValidateStateMachineDefinitionSeverity,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartExecutionInput {
    pub state_machine_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The execution's input as a JSON text (`"{}"` when absent, as AWS does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartExecutionOutput {
    pub execution_arn: String,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartSyncExecutionInput {
    pub state_machine_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_data: Option<IncludedData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartSyncExecutionOutput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
    #[serde(with = "epoch_seconds")]
    pub stop_date: DateTime<Utc>,
    pub status: SyncExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<CloudWatchEventsExecutionDataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<CloudWatchEventsExecutionDataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_details: Option<BillingDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeExecutionInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_data: Option<IncludedData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeExecutionOutput {
    pub execution_arn: String,
    pub state_machine_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: ExecutionStatus,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<CloudWatchEventsExecutionDataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<CloudWatchEventsExecutionDataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_version_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_alias_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<i32>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub redrive_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_status: Option<ExecutionRedriveStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_status_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeStateMachineForExecutionInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_data: Option<IncludedData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeStateMachineForExecutionOutput {
    pub state_machine_arn: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    #[serde(with = "epoch_seconds")]
    pub update_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_configuration: Option<LoggingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing_configuration: Option<TracingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable_references: Option<VariableReferences>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListExecutionsInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_filter: Option<ExecutionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_filter: Option<ExecutionRedriveFilter>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListExecutionsOutput {
    pub executions: Vec<ExecutionListItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionListItem {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_version_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machine_alias_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<i32>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub redrive_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetExecutionHistoryInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_order: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_execution_data: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetExecutionHistoryOutput {
    pub events: Vec<HistoryEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// One history event. The per-type details are kept as JSON objects, keyed by the
/// member name the model gives them; exactly one (or none) is set per event. Within
/// them, `input`/`output`/`parameters` are JSON texts (strings), as on the wire.
/// [`HistoryEvent::new`] files a details object under the member its `type` uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    #[serde(with = "epoch_seconds")]
    pub timestamp: DateTime<Utc>,
    /// `ExecutionStarted`, `PassStateEntered`, ... (the model's HistoryEventType).
    #[serde(rename = "type")]
    pub r#type: String,
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_event_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_schedule_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_scheduled_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_succeeded_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_timed_out_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduled_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_start_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_submit_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_submitted_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_succeeded_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timed_out_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_succeeded_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_aborted_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timed_out_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_redriven_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_state_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_succeeded_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_aborted_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_schedule_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_scheduled_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_start_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_succeeded_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_timed_out_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_entered_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_exited_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_started_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_failed_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_run_redriven_event_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_failed_event_details: Option<Value>,
}

/// The state machine an execution belongs to: `arn:aws:states:R:A:execution:M:NAME`
/// (or `express:M:NAME:ID`) is of `arn:aws:states:R:A:stateMachine:M`.
pub fn state_machine_of(execution_arn: &str) -> String {
    let parts: Vec<&str> = execution_arn.splitn(8, ':').collect();
    match parts.as_slice() {
        [arn, aws, states, region, account, _kind, machine, ..] => {
            format!("{arn}:{aws}:{states}:{region}:{account}:stateMachine:{machine}")
        }
        _ => execution_arn.to_string(),
    }
}

impl HistoryEvent {
    /// An event whose `details` (`Value::Null` for none) is filed under the member
    /// AWS uses for `type`: `stateEnteredEventDetails` for every `*StateEntered`,
    /// `stateExitedEventDetails` for every `*StateExited`, otherwise
    /// `<lowerCamel(type)>EventDetails` (`TaskSucceeded` -> `taskSucceededEventDetails`).
    /// Details of a type that has no details member are dropped.
    pub fn new(
        id: i64,
        previous_event_id: Option<i64>,
        timestamp: DateTime<Utc>,
        r#type: impl Into<String>,
        details: Value,
    ) -> HistoryEvent {
        let mut event = HistoryEvent {
            timestamp,
            r#type: r#type.into(),
            id,
            previous_event_id,
            ..HistoryEvent::default()
        };
        if !details.is_null() {
            if let Some(slot) = event.details_slot() {
                *slot = Some(details);
            }
        }
        event
    }

    /// The event's type as the engine names it; None for a type it does not record
    /// (a deployed backend's history may hold more).
    pub fn kind(&self) -> Option<asl::history::HistoryEventKind> {
        asl::history::HistoryEventKind::parse(&self.r#type)
    }

    /// The state a `*StateEntered` or `*StateExited` event is about.
    pub fn state_name(&self) -> Option<&str> {
        self.state_entered_event_details
            .as_ref()
            .or(self.state_exited_event_details.as_ref())
            .and_then(|d| d["name"].as_str())
    }

    /// The details member this event's `type` uses, if it has one.
    pub fn details_slot(&mut self) -> Option<&mut Option<Value>> {
        let kind = self.kind();
        if kind.is_some_and(|k| k.is_state_entered()) {
            return Some(&mut self.state_entered_event_details);
        }
        if kind.is_some_and(|k| k.is_state_exited()) {
            return Some(&mut self.state_exited_event_details);
        }
        let t = self.r#type.as_str();
        Some(match t {
            "ActivityFailed" => &mut self.activity_failed_event_details,
            "ActivityScheduleFailed" => &mut self.activity_schedule_failed_event_details,
            "ActivityScheduled" => &mut self.activity_scheduled_event_details,
            "ActivityStarted" => &mut self.activity_started_event_details,
            "ActivitySucceeded" => &mut self.activity_succeeded_event_details,
            "ActivityTimedOut" => &mut self.activity_timed_out_event_details,
            "TaskFailed" => &mut self.task_failed_event_details,
            "TaskScheduled" => &mut self.task_scheduled_event_details,
            "TaskStartFailed" => &mut self.task_start_failed_event_details,
            "TaskStarted" => &mut self.task_started_event_details,
            "TaskSubmitFailed" => &mut self.task_submit_failed_event_details,
            "TaskSubmitted" => &mut self.task_submitted_event_details,
            "TaskSucceeded" => &mut self.task_succeeded_event_details,
            "TaskTimedOut" => &mut self.task_timed_out_event_details,
            "ExecutionFailed" => &mut self.execution_failed_event_details,
            "ExecutionStarted" => &mut self.execution_started_event_details,
            "ExecutionSucceeded" => &mut self.execution_succeeded_event_details,
            "ExecutionAborted" => &mut self.execution_aborted_event_details,
            "ExecutionTimedOut" => &mut self.execution_timed_out_event_details,
            "ExecutionRedriven" => &mut self.execution_redriven_event_details,
            "MapStateStarted" => &mut self.map_state_started_event_details,
            "MapIterationStarted" => &mut self.map_iteration_started_event_details,
            "MapIterationSucceeded" => &mut self.map_iteration_succeeded_event_details,
            "MapIterationFailed" => &mut self.map_iteration_failed_event_details,
            "MapIterationAborted" => &mut self.map_iteration_aborted_event_details,
            "LambdaFunctionFailed" => &mut self.lambda_function_failed_event_details,
            "LambdaFunctionScheduleFailed" => {
                &mut self.lambda_function_schedule_failed_event_details
            }
            "LambdaFunctionScheduled" => &mut self.lambda_function_scheduled_event_details,
            "LambdaFunctionStartFailed" => &mut self.lambda_function_start_failed_event_details,
            "LambdaFunctionSucceeded" => &mut self.lambda_function_succeeded_event_details,
            "LambdaFunctionTimedOut" => &mut self.lambda_function_timed_out_event_details,
            "MapRunStarted" => &mut self.map_run_started_event_details,
            "MapRunFailed" => &mut self.map_run_failed_event_details,
            "MapRunRedriven" => &mut self.map_run_redriven_event_details,
            "EvaluationFailed" => &mut self.evaluation_failed_event_details,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopExecutionInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopExecutionOutput {
    #[serde(with = "epoch_seconds")]
    pub stop_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveExecutionInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveExecutionOutput {
    #[serde(with = "epoch_seconds")]
    pub redrive_date: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Task tokens
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTaskSuccessInput {
    pub task_token: String,
    /// The task's result as a JSON text.
    pub output: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendTaskSuccessOutput {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTaskFailureInput {
    pub task_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendTaskFailureOutput {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTaskHeartbeatInput {
    pub task_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendTaskHeartbeatOutput {}

// ---------------------------------------------------------------------------------------
// Activities
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateActivityInput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateActivityOutput {
    pub activity_arn: String,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteActivityInput {
    pub activity_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteActivityOutput {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeActivityInput {
    pub activity_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeActivityOutput {
    pub activity_arn: String,
    pub name: String,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActivitiesInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActivitiesOutput {
    pub activities: Vec<ActivityListItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityListItem {
    pub activity_arn: String,
    pub name: String,
    #[serde(with = "epoch_seconds")]
    pub creation_date: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetActivityTaskInput {
    pub activity_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_name: Option<String>,
}

/// Both members absent (`{}`) when the long poll ends with no task, as on AWS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetActivityTaskOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

// ---------------------------------------------------------------------------------------
// TestState
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateInput {
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection_level: Option<InspectionLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_secrets: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_configuration: Option<TestStateConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MockInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_output: Option<MockErrorOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_validation_mode: Option<MockResponseValidationMode>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MockErrorOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrier_retry_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_caused_by_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_failure_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_item_reader_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestStateOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection_data: Option<InspectionData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TestExecutionStatus>,
}

/// TestState's `inspectionData`; every `after*` member is a JSON text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_input_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_parameters: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_result_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_result_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<InspectionDataRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<InspectionDataResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<InspectionErrorDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_items_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_item_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_item_batcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_items_pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_percentage: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionDataRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionDataResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionErrorDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_interval_seconds: Option<i32>,
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

macro_rules! error_codes {
    ($($(#[$m:meta])* $variant:ident => $ctor:ident, $status:literal;)+) => {
        /// Every error code the API can answer with: the model's exceptions, plus the
        /// protocol-level ones AWS's front end returns (`UnknownOperationException`,
        /// `SerializationException`, `InternalFailure`, `ServiceUnavailable`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($(#[$m])* $variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as sent in `__type` (and `x-amzn-ErrorType`).
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant)),+ }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $(stringify!($variant) => Some(ErrorCode::$variant),)+ _ => None }
            }

            /// The HTTP status AWS answers with: 400 for client faults, 5xx for server faults.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),+ }
            }
        }

        impl ApiError {
            $(
                #[doc = concat!("A `", stringify!($variant), "` error.")]
                pub fn $ctor(message: impl Into<String>) -> ApiError {
                    ApiError::new(ErrorCode::$variant, message)
                }
            )+
        }
    };
}

error_codes! {
    ActivityAlreadyExists => activity_already_exists, 400;
    ActivityDoesNotExist => activity_does_not_exist, 400;
    ActivityLimitExceeded => activity_limit_exceeded, 400;
    ActivityWorkerLimitExceeded => activity_worker_limit_exceeded, 400;
    ConflictException => conflict, 400;
    ExecutionAlreadyExists => execution_already_exists, 400;
    ExecutionDoesNotExist => execution_does_not_exist, 400;
    ExecutionLimitExceeded => execution_limit_exceeded, 400;
    ExecutionNotRedrivable => execution_not_redrivable, 400;
    InvalidArn => invalid_arn, 400;
    InvalidDefinition => invalid_definition, 400;
    InvalidEncryptionConfiguration => invalid_encryption_configuration, 400;
    InvalidExecutionInput => invalid_execution_input, 400;
    InvalidLoggingConfiguration => invalid_logging_configuration, 400;
    InvalidName => invalid_name, 400;
    InvalidOutput => invalid_output, 400;
    InvalidToken => invalid_token, 400;
    InvalidTracingConfiguration => invalid_tracing_configuration, 400;
    KmsAccessDeniedException => kms_access_denied, 400;
    KmsInvalidStateException => kms_invalid_state, 400;
    KmsThrottlingException => kms_throttling, 400;
    MissingRequiredParameter => missing_required_parameter, 400;
    ResourceNotFound => resource_not_found, 400;
    ServiceQuotaExceededException => service_quota_exceeded, 400;
    StateMachineAlreadyExists => state_machine_already_exists, 400;
    StateMachineDeleting => state_machine_deleting, 400;
    StateMachineDoesNotExist => state_machine_does_not_exist, 400;
    StateMachineLimitExceeded => state_machine_limit_exceeded, 400;
    StateMachineTypeNotSupported => state_machine_type_not_supported, 400;
    TaskDoesNotExist => task_does_not_exist, 400;
    TaskTimedOut => task_timed_out, 400;
    TooManyTags => too_many_tags, 400;
    ValidationException => validation, 400;
    /// Not Step Functions' own: AWS's common errors, which the AWS backend of oms
    /// passes on as AWS answered them.
    AccessDeniedException => access_denied, 400;
    ThrottlingException => throttling, 400;
    UnrecognizedClientException => unrecognized_client, 400;
    /// AWS's front end, on a request with no Authorization header.
    MissingAuthenticationTokenException => missing_authentication_token, 403;
    /// The Authorization header lacks a part SigV4 requires.
    IncompleteSignatureException => incomplete_signature, 400;
    /// The signature does not match the request, or is too old.
    InvalidSignatureException => invalid_signature, 400;
    /// The `X-Amz-Target` names no operation of this service (or is missing).
    UnknownOperationException => unknown_operation, 400;
    /// The body is not JSON, or a member has the wrong JSON type.
    SerializationException => serialization, 400;
    InternalFailure => internal_failure, 500;
    ServiceUnavailable => service_unavailable, 503;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: its AWS code and message. Construct with the per-code constructors
/// (`ApiError::invalid_arn("Invalid Arn: ...")`) or [`ApiError::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The code as sent on the wire.
    pub fn code_str(&self) -> &'static str {
        self.code.as_str()
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// True for server faults (5xx), which clients may retry.
    pub fn is_server_fault(&self) -> bool {
        self.http_status() >= 500
    }
}

// ---------------------------------------------------------------------------------------
// Map Runs (distributed Map)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl MapRunStatus {
    pub fn parse(s: &str) -> Option<MapRunStatus> {
        match s {
            "RUNNING" => Some(MapRunStatus::Running),
            "SUCCEEDED" => Some(MapRunStatus::Succeeded),
            "FAILED" => Some(MapRunStatus::Failed),
            "ABORTED" => Some(MapRunStatus::Aborted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMapRunsInput {
    pub execution_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMapRunsOutput {
    pub map_runs: Vec<MapRunListItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRunListItem {
    pub execution_arn: String,
    pub map_run_arn: String,
    pub state_machine_arn: String,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeMapRunInput {
    pub map_run_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeMapRunOutput {
    pub map_run_arn: String,
    pub execution_arn: String,
    pub status: MapRunStatus,
    #[serde(with = "epoch_seconds")]
    pub start_date: DateTime<Utc>,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_date: Option<DateTime<Utc>>,
    pub max_concurrency: i64,
    pub tolerated_failure_percentage: f64,
    pub tolerated_failure_count: i64,
    pub item_counts: MapRunCounts,
    pub execution_counts: MapRunCounts,
    #[serde(default)]
    pub redrive_count: i32,
    #[serde(
        default,
        with = "epoch_seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub redrive_date: Option<DateTime<Utc>>,
}

/// DescribeMapRun's `itemCounts` and `executionCounts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRunCounts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub aborted: i64,
    pub total: i64,
    pub results_written: i64,
    #[serde(default)]
    pub failures_not_redrivable: i64,
    #[serde(default)]
    pub pending_redrive: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMapRunInput {
    pub map_run_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_count: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateMapRunOutput {}

// ---------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------

/// The Step Functions API. The durable runtime implements it in-process; an adapter
/// over aws-sdk-sfn will implement it against AWS. `dispatch` serves it over the
/// awsJson 1.0 protocol.
#[async_trait::async_trait]
pub trait StepFunctions: Send + Sync {
    async fn create_state_machine(
        &self,
        input: CreateStateMachineInput,
    ) -> Result<CreateStateMachineOutput, ApiError>;
    async fn update_state_machine(
        &self,
        input: UpdateStateMachineInput,
    ) -> Result<UpdateStateMachineOutput, ApiError>;
    async fn describe_state_machine(
        &self,
        input: DescribeStateMachineInput,
    ) -> Result<DescribeStateMachineOutput, ApiError>;
    async fn list_state_machines(
        &self,
        input: ListStateMachinesInput,
    ) -> Result<ListStateMachinesOutput, ApiError>;
    async fn delete_state_machine(
        &self,
        input: DeleteStateMachineInput,
    ) -> Result<DeleteStateMachineOutput, ApiError>;
    async fn validate_state_machine_definition(
        &self,
        input: ValidateStateMachineDefinitionInput,
    ) -> Result<ValidateStateMachineDefinitionOutput, ApiError>;
    async fn start_execution(
        &self,
        input: StartExecutionInput,
    ) -> Result<StartExecutionOutput, ApiError>;
    async fn start_sync_execution(
        &self,
        input: StartSyncExecutionInput,
    ) -> Result<StartSyncExecutionOutput, ApiError>;
    async fn describe_execution(
        &self,
        input: DescribeExecutionInput,
    ) -> Result<DescribeExecutionOutput, ApiError>;
    async fn describe_state_machine_for_execution(
        &self,
        input: DescribeStateMachineForExecutionInput,
    ) -> Result<DescribeStateMachineForExecutionOutput, ApiError>;
    async fn list_executions(
        &self,
        input: ListExecutionsInput,
    ) -> Result<ListExecutionsOutput, ApiError>;
    async fn get_execution_history(
        &self,
        input: GetExecutionHistoryInput,
    ) -> Result<GetExecutionHistoryOutput, ApiError>;
    async fn stop_execution(
        &self,
        input: StopExecutionInput,
    ) -> Result<StopExecutionOutput, ApiError>;
    async fn redrive_execution(
        &self,
        input: RedriveExecutionInput,
    ) -> Result<RedriveExecutionOutput, ApiError>;
    async fn send_task_success(
        &self,
        input: SendTaskSuccessInput,
    ) -> Result<SendTaskSuccessOutput, ApiError>;
    async fn send_task_failure(
        &self,
        input: SendTaskFailureInput,
    ) -> Result<SendTaskFailureOutput, ApiError>;
    async fn send_task_heartbeat(
        &self,
        input: SendTaskHeartbeatInput,
    ) -> Result<SendTaskHeartbeatOutput, ApiError>;
    async fn create_activity(
        &self,
        input: CreateActivityInput,
    ) -> Result<CreateActivityOutput, ApiError>;
    async fn delete_activity(
        &self,
        input: DeleteActivityInput,
    ) -> Result<DeleteActivityOutput, ApiError>;
    async fn describe_activity(
        &self,
        input: DescribeActivityInput,
    ) -> Result<DescribeActivityOutput, ApiError>;
    async fn list_activities(
        &self,
        input: ListActivitiesInput,
    ) -> Result<ListActivitiesOutput, ApiError>;
    async fn get_activity_task(
        &self,
        input: GetActivityTaskInput,
    ) -> Result<GetActivityTaskOutput, ApiError>;
    async fn test_state(&self, input: TestStateInput) -> Result<TestStateOutput, ApiError>;
    async fn list_map_runs(&self, input: ListMapRunsInput) -> Result<ListMapRunsOutput, ApiError>;
    async fn describe_map_run(
        &self,
        input: DescribeMapRunInput,
    ) -> Result<DescribeMapRunOutput, ApiError>;
    async fn update_map_run(
        &self,
        input: UpdateMapRunInput,
    ) -> Result<UpdateMapRunOutput, ApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_epoch_seconds() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let out = StartExecutionOutput {
            execution_arn: "arn".into(),
            start_date: t,
        };
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(
            v,
            json!({"executionArn": "arn", "startDate": 1_700_000_000.123})
        );
        let back: StartExecutionOutput = serde_json::from_value(v).unwrap();
        assert_eq!(back, out);
        // Integers are timestamps too.
        let back: StopExecutionOutput = serde_json::from_value(json!({"stopDate": 5})).unwrap();
        assert_eq!(back.stop_date.timestamp(), 5);
    }

    #[test]
    fn optional_members_are_left_out() {
        let out = DescribeExecutionOutput {
            execution_arn: "e".into(),
            state_machine_arn: "s".into(),
            status: ExecutionStatus::Succeeded,
            output: Some("{\"a\":1}".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"executionArn": "e", "stateMachineArn": "s", "status": "SUCCEEDED",
                   "startDate": 0.0, "output": "{\"a\":1}"})
        );
        let input: CreateStateMachineInput = serde_json::from_value(
            json!({"name": "n", "definition": "{}", "roleArn": "r", "type": "EXPRESS"}),
        )
        .unwrap();
        assert_eq!(input.r#type, Some(StateMachineType::Express));
        assert_eq!(input.tags, None);
    }

    #[test]
    fn history_events_file_details_under_their_member() {
        let t = DateTime::from_timestamp(1, 0).unwrap();
        let e = HistoryEvent::new(
            2,
            Some(1),
            t,
            "PassStateEntered",
            json!({"name": "P", "input": "{}"}),
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"timestamp": 1.0, "type": "PassStateEntered", "id": 2, "previousEventId": 1,
                   "stateEnteredEventDetails": {"name": "P", "input": "{}"}})
        );
        let e = HistoryEvent::new(
            3,
            Some(2),
            t,
            "MapIterationFailed",
            json!({"name": "M", "index": 0}),
        );
        assert!(e.map_iteration_failed_event_details.is_some());
        let e = HistoryEvent::new(4, Some(3), t, "TaskSucceeded", json!({"resource": "x"}));
        assert!(e.task_succeeded_event_details.is_some());
        let e = HistoryEvent::new(5, Some(4), t, "ParallelStateStarted", Value::Null);
        assert_eq!(
            serde_json::to_value(&e).unwrap().as_object().unwrap().len(),
            4
        );
    }

    #[test]
    fn error_codes_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
        let e = ApiError::invalid_arn("Invalid Arn: 'x'");
        assert_eq!(e.code_str(), "InvalidArn");
        assert_eq!(e.http_status(), 400);
        assert!(ApiError::internal_failure("boom").is_server_fault());
    }
}
