//! The price table: what AWS charges for each meter of the bill, where each figure was
//! found, and the assumptions the bill is computed under.

use serde::Serialize;

/// What AWS bills for, one meter per line of the bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    StateTransitions,
    ExpressRequests,
    ExpressGbSeconds,
    LambdaRequests,
    LambdaGbSeconds,
    DynamoWriteUnits,
    DynamoReadUnits,
    LogsIngestedGb,
    XrayTraces,
    ApiRequests,
    KmsKeyMonths,
    KmsRequests,
}

/// A price: `usd` for every `per` units of `meter`, in us-east-1, without free tiers.
#[derive(Debug, Serialize)]
pub struct Price {
    pub meter: Meter,
    pub service: &'static str,
    pub usd: f64,
    pub per: f64,
    pub unit: &'static str,
    /// Where the figure was found, and when.
    pub source: &'static str,
}

/// Every price the bill uses: us-east-1, list prices, no free tier (see the free tiers
/// in [`ASSUMPTIONS`]). Looked up on 2026-11-26 in stored copies of the pages named
/// (the copies' own dates are not known); where AWS's own copy did not show the figure,
/// the source says which page did.
pub const PRICES: [Price; 12] = [
    Price {
        meter: Meter::StateTransitions,
        service: "Step Functions (Standard)",
        usd: 0.025,
        per: 1_000.0,
        unit: "state transitions",
        source: "checked 2026-11-26 at https://aws.amazon.com/step-functions/pricing/ \
                 (US East (N. Virginia) $0.0250 per 1,000; 4,000 a month free)",
    },
    Price {
        meter: Meter::ExpressRequests,
        service: "Step Functions (Express) requests",
        usd: 1.00,
        per: 1_000_000.0,
        unit: "requests",
        source: "checked 2026-12-03 in a copy of https://aws.amazon.com/step-functions/pricing/ \
                 (\"The price is $1.00 per million requests\", in its Express example)",
    },
    Price {
        meter: Meter::ExpressGbSeconds,
        service: "Step Functions (Express) duration",
        usd: 0.000_016_666_7,
        per: 1.0,
        unit: "GB-second",
        source: "checked 2026-12-03 in a copy of https://aws.amazon.com/step-functions/pricing/ \
                 ($0.06 per GB-hour for the first 1,000 GB-hours a month, i.e. $0.0000166667 a \
                 GB-second; memory billed in 64 MB chunks) and AWS's Step Functions workshop, \
                 module 13 (duration rounded up to the nearest 100 ms)",
    },
    Price {
        meter: Meter::LambdaRequests,
        service: "Lambda requests",
        usd: 0.20,
        per: 1_000_000.0,
        unit: "requests",
        source: "checked 2026-11-26 at https://docs.aws.amazon.com/whitepapers/latest/\
                 how-aws-pricing-works/lambda.html ($0.20 per 1M; 1M a month free)",
    },
    Price {
        meter: Meter::LambdaGbSeconds,
        service: "Lambda duration (x86)",
        usd: 0.000_016_666_7,
        per: 1.0,
        unit: "GB-second",
        source: "as published for us-east-1 x86, first 6 billion GB-s a month, per \
                 https://cloudchipr.com/blog/aws-lambda-pricing (checked 2026-11-26; AWS's \
                 whitepaper rounds it to $0.00001667; 400,000 GB-s a month free)",
    },
    Price {
        meter: Meter::DynamoWriteUnits,
        service: "DynamoDB on-demand writes",
        usd: 0.625,
        per: 1_000_000.0,
        unit: "write request units",
        source: "after the 50% on-demand cut of 2024-11-01, as published per \
                 https://airbyte.com/data-engineering-resources/dynamodb-pricing (2025-07-21; \
                 checked 2026-11-26); AWS's page https://aws.amazon.com/dynamodb/pricing/on-demand/ \
                 was not readable here. No free request units on demand",
    },
    Price {
        meter: Meter::DynamoReadUnits,
        service: "DynamoDB on-demand reads",
        usd: 0.125,
        per: 1_000_000.0,
        unit: "read request units",
        source: "as for writes: $0.125 per million RRU in us-east-1 per \
                 https://airbyte.com/data-engineering-resources/dynamodb-pricing (checked 2026-11-26)",
    },
    Price {
        meter: Meter::LogsIngestedGb,
        service: "CloudWatch Logs ingestion",
        usd: 0.50,
        per: 1.0,
        unit: "GB ingested (standard class)",
        source: "as published per https://coralogix.com/blog/is-cloudwatch-really-cost-efficient \
                 and https://www.factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards/ \
                 (checked 2026-11-26; AWS's https://aws.amazon.com/cloudwatch/pricing/ copy showed \
                 only the 5 GB free tier)",
    },
    Price {
        meter: Meter::XrayTraces,
        service: "X-Ray traces recorded",
        usd: 5.00,
        per: 1_000_000.0,
        unit: "traces recorded",
        source: "checked 2026-11-26 at https://aws.amazon.com/de/xray/pricing/ \
                 ($5 per million recorded; 100,000 a month free)",
    },
    Price {
        meter: Meter::ApiRequests,
        service: "API Gateway (REST)",
        usd: 3.50,
        per: 1_000_000.0,
        unit: "requests",
        source: "checked 2026-11-26 at https://docs.aws.amazon.com/whitepapers/latest/\
                 best-practices-api-gateway-private-apis-integration/cost-optimization.html \
                 (REST, first 333M requests $3.50 per million; 1M a month free for 12 months)",
    },
    Price {
        meter: Meter::KmsKeyMonths,
        service: "KMS customer managed key",
        usd: 1.00,
        per: 1.0,
        unit: "key-month",
        source: "checked 2026-11-26 at https://aws.amazon.com/kms/pricing/ ($1 a month per key)",
    },
    Price {
        meter: Meter::KmsRequests,
        service: "KMS requests",
        usd: 0.03,
        per: 10_000.0,
        unit: "requests",
        source: "as published per https://www.wring.co/blog/aws-kms-pricing-guide (checked \
                 2026-11-26; 20,000 a month free per https://aws.amazon.com/kms/pricing/)",
    },
];

pub fn price(meter: Meter) -> &'static Price {
    PRICES
        .iter()
        .find(|p| p.meter == meter)
        .expect("every meter has a price")
}

// ---- Assumptions --------------------------------------------------------------------

pub const REGION: &str = "us-east-1";
/// An account id for the ARNs the simulation builds (their length is what matters: they
/// are in the payloads, the history and the order record).
pub const ACCOUNT: &str = "123456789012";
pub const DAYS_PER_MONTH: f64 = 30.0;
/// The activities' Lambda memory, as the CDK stack sets it (infra-cdk/lib/oms-stack.ts:
/// x86_64, 256 MB, active tracing; the stack is still being written).
pub const LAMBDA_MEMORY_MB: f64 = 256.0;
pub const DEFAULT_LAMBDA_MS: u64 = 50;
/// What every Lambda invocation writes to CloudWatch Logs even when the function logs
/// nothing (the activities do not): START (~75 B), END (~55 B) and REPORT with its XRAY
/// line (~220 B) platform lines.
pub const LAMBDA_LOG_BYTES_PER_INVOCATION: u64 = 350;
/// The CDK stack's one customer managed key (table, log groups, alarm topic).
pub const KMS_KEYS: f64 = 1.0;
/// DynamoDB asks KMS for the table key again at most about every 5 minutes per caller
/// principal: one role for each of the 16 activity functions (10 of the order saga, 6 of
/// the amendments'), the warehouse-callback handler and the order events' outbox relay,
/// 12 times an hour, 30 days. An upper bound that does not grow with orders.
pub const KMS_REQUESTS_PER_MONTH: f64 = 18.0 * 12.0 * 24.0 * DAYS_PER_MONTH;
/// An Express execution's memory, billed in 64 MB chunks: 50 MB plus the definition
/// plus the data it holds (AWS's pricing page), well under 64 MB for the child's few
/// KB.
pub const EXPRESS_BILLED_MEMORY_MB: f64 = 64.0;
/// Express durations are rounded up to the next 100 ms.
pub const EXPRESS_DURATION_STEP_MS: u64 = 100;
/// Logs are priced per GB.
pub const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;

pub const ASSUMPTIONS: &[&str] = &[
    "Prices are us-east-1 list prices without any free tier (Step Functions 4,000 transitions, \
     Lambda 1M requests and 400,000 GB-s, CloudWatch Logs 5 GB, X-Ray 100,000 traces, KMS 20,000 \
     requests a month; API Gateway 1M requests a month in an account's first 12 months).",
    "A month is 30 days. Tiered prices stay in their first tier at these volumes.",
    "State transitions are the StateEntered events of the Standard workflow's simulated history \
     (every state entered, including inside Map iterations) plus one per retry; no transient \
     error occurs. The Express child's states cost no transitions.",
    "Express child (order-prepare): one request per execution (two when a forward step fails for \
     good: Prepare fails with States.TaskFailed and PrepareReporting runs the child again to \
     report the error); its duration is the --lambda-ms of each Lambda invocation it makes plus \
     any retry wait, rounded up to 100 ms, at 64 MB (50 MB plus a few KB of definition and data). \
     Step Functions' own few milliseconds a state are not counted: 100 ms more per order would \
     add about $0.03 a month at 10,000 orders a day. .sync:2's polling of the child costs the \
     parent nothing more.",
    "Lambda: x86, 256 MB, each invocation billed the --lambda-ms duration (an assumption, not \
     a measurement; cold starts not counted). Invocations: every task of the saga (PickShipment \
     included), and one handler per warehouse answer.",
    "The warehouse answers each pick at once through POST /shipments/{id}/picked: one API \
     Gateway request and one Lambda invocation running the real confirm_pick (its DynamoDB \
     units are counted), whose SendTaskSuccess/SendTaskFailure costs no transition.",
    "POST /orders: one API Gateway request starting the execution (a Step Functions service \
     integration, no Lambda in front, as the CDK stack builds it); the order is placed by the \
     saga's PlaceOrder. The stack has no warehouse-callback route yet: the answer's request \
     and handler above are this estimate's model of one.",
    "DynamoDB: every store call is billed as activities/src/store/dynamo.rs makes it: GetItem \
     and Query strongly consistent (1 RRU per started 4 KB, 1 RRU for an item not found), \
     Scan reads the whole table, each batch one TransactWriteItems at 2 WRU per item per \
     started KB of the larger of the item before and after (ConditionCheck items included). \
     Item sizes follow DynamoDB's rules for the attributes dynamo.rs writes. The built-in \
     ledger payment gateway uses the same table and is counted; fault injection is off, as \
     the stack deploys it, so fault plans are not read.",
    "CloudWatch Logs: each history event is one log record of about the size of its JSON with \
     execution data (an approximation of the shipped format, billed as vended logs, $0.50/GB in \
     their first tier), plus 350 bytes of Lambda platform lines per invocation. The single \
     Standard workflow logs level ALL (as the stack deployed it); the split design logs level \
     ERROR for both machines (only failing, timed-out or aborted events): the Standard saga's \
     whole history stays in GetExecutionHistory, and the child's output and errors are in \
     Prepare's events there. Not counted: API Gateway's access and INFO execution logs, and log \
     storage ($0.03 per GB-month, 3 months' retention in the stack).",
    "X-Ray: active tracing, one trace recorded per API request (the execution joins the trace \
     of POST /orders); 100% sampled, an upper bound above ~1 request/s where the default rule \
     samples 5%.",
    "KMS: the stack's one customer managed key ($1/month; its yearly rotation adds $1/month per \
     rotation per https://aws.amazon.com/kms/pricing/, capped after the second since May 2024, \
     not confirmed here; not counted) and at most 18 callers x 12 requests an hour for the \
     table (DynamoDB caches the table key for 5 minutes per principal); CloudWatch Logs' \
     requests for the encrypted log groups are cached too and not counted. With AWS owned \
     keys both lines would be $0.",
    "Task tokens in the simulation are 36-character UUIDs; AWS's are longer (up to 2,048), \
     which can push a shipment item that stores one over 1 KB while the pick waits.",
];
