//! `oms cost`: the monthly AWS bill of running the order saga, computed from the state
//! machine rather than guessed.
//!
//! Each path an order can take (the happy path, each business failure of a forward step
//! and its compensations, an order rejected at PlaceOrder) is simulated once: the saga
//! (`statemachines/order-saga.asl.json`, with the substitutions `oms up` fills) runs on
//! the in-memory runner, its tasks call the real activities, and the activities' store
//! is an in-memory SQLite behind [`MeteredStore`], which bills every call as the
//! DynamoDB store (`activities::store::dynamo`) would make it. From the run come the
//! state transitions (the history's StateEntered events, plus retries), the Lambda
//! invocations, DynamoDB's read and write request units and the size of the history that
//! logging level ALL ships to CloudWatch Logs. The saga's forward steps that do not
//! wait run as an Express child (`statemachines/order-prepare.asl.json`), billed per
//! request and duration rather than per transition; the single Standard workflow it
//! replaced (`statemachines/designs/`) is simulated beside it, and the report shows
//! both bills and the difference. The paths are then mixed
//! (`--compensation-rate`, `--rejection-rate`) and priced with [`PRICES`].
//!
//! The parts: `prices.rs` (the price table and the assumptions), `metering.rs` (the
//! store that bills every call as DynamoDB would), `simulate.rs` (the paths and their
//! runs), `bill.rs` (the mix and the monthly bill) and `report.rs` (table or JSON).

mod bill;
mod metering;
mod prices;
mod report;
mod simulate;

use crate::client::Output;
use std::process::ExitCode;

// The flags of `oms cost` (its help is the `Cost` subcommand's doc comment).
#[derive(clap::Args)]
pub struct CostArgs {
    /// Orders a day.
    #[arg(long)]
    pub orders_per_day: u64,
    /// The share of orders that fail a forward step (reserve, charge, pick or ship)
    /// and compensate, spread evenly over those four paths.
    #[arg(long, default_value_t = 0.02)]
    pub compensation_rate: f64,
    /// The share of orders the saga rejects at PlaceOrder (the Orders API checks
    /// orders before starting the saga, so this is rare).
    #[arg(long, default_value_t = 0.0)]
    pub rejection_rate: f64,
    /// Assumed billed duration of one Lambda invocation, in milliseconds.
    #[arg(long, default_value_t = prices::DEFAULT_LAMBDA_MS)]
    pub lambda_ms: u64,
    /// Shipments per order (the demo order split over this many warehouses).
    #[arg(long, default_value_t = 1)]
    pub shipments: usize,
    /// Which of the saga's definitions to simulate: JSONPath (the default, as the CDK
    /// app deploys it) or its JSONata twin.
    #[arg(long, env = "OMS_SAGA_QUERY_LANGUAGE", default_value = "JSONPath")]
    pub saga_query_language: oms_orders::SagaLanguage,
}

/// One design simulated and billed.
pub(crate) struct Costed {
    pub design: simulate::Design,
    pub runs: Vec<simulate::PathRun>,
    pub bill: bill::Bill,
}

fn costed(
    design: simulate::Design,
    args: &CostArgs,
    shares: &[(simulate::Path, f64)],
) -> Result<Costed, String> {
    let runs = simulate::simulate_all(&design, args.shipments)?;
    let bill = bill::bill(&runs, shares, args.orders_per_day, args.lambda_ms);
    Ok(Costed { design, runs, bill })
}

/// `oms cost`: simulates every path of the saga as deployed and of the single Standard
/// workflow it replaced, mixes and prices them, prints the report and the difference.
pub fn cost(args: CostArgs, output: Output) -> Result<ExitCode, String> {
    let shares = bill::mix(args.compensation_rate, args.rejection_rate)?;
    let deployed = costed(
        simulate::Design::split(args.saga_query_language)?,
        &args,
        &shares,
    )?;
    let baseline = costed(simulate::Design::single()?, &args, &shares)?;
    match output {
        Output::Json => println!(
            "{}",
            report::report_json(&args, &shares, &deployed, &baseline)
        ),
        Output::Table => print!(
            "{}",
            report::report_table(&args, &shares, &deployed, &baseline)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
