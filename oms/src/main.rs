//! `oms`: the one binary users run: `oms up` (the Step Functions API and the Orders
//! API), the order CLI that talks to it, and tools that run, validate and benchmark
//! state machines in memory.

mod auth;
mod aws;
mod bench;
mod cli;
mod client;
mod cost;
mod events;
mod events_http;
mod exec;
mod export;
mod hosts;
mod import_cli;
mod imports_http;
mod integrations;
mod invoker;
mod jsonata_cli;
mod load;
mod metrics;
mod orders_http;
mod respond;
mod server;
mod up;
mod worker;

use clap::{Parser, Subcommand, ValueEnum};

/// glibc's allocator showed in profiles of the durable runtime: memory allocated on
/// the async workers is freed on the store's writer thread, and its arenas contend.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "oms",
    version,
    about = "Order management on Amazon States Language sagas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The server the order commands talk to.
    #[arg(
        long,
        global = true,
        env = "OMS_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: String,
    /// The server's bearer token, where it requires one (off loopback).
    #[arg(long, global = true, env = "OMS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How the order commands print: tables for people, or JSON.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: client::Output,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    /// This machine: `oms up`'s own runtime and SQLite store.
    Local,
    /// A deployed stack (infra-cdk): AWS Step Functions and DynamoDB.
    Aws,
}

/// Where `oms up` and the order commands find executions and orders.
#[derive(clap::Args)]
#[command(next_help_heading = "Backend")]
struct BackendArgs {
    /// `aws`: serve (`oms up`) or run (the order commands) the Orders API over a
    /// deployed stack, with the standard AWS credential chain and region.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "OMS_BACKEND",
        default_value = "local"
    )]
    backend: Backend,
    /// The outputs of the deployed stack (`cdk deploy --outputs-file FILE`).
    #[arg(long, global = true, env = "OMS_STACK_OUTPUTS")]
    stack_outputs: Option<PathBuf>,
    /// The DynamoDB table [default: OrdersTableName in --stack-outputs].
    #[arg(long, global = true, env = "OMS_TABLE")]
    table: Option<String>,
    /// The order saga [default: StateMachineArn in --stack-outputs].
    #[arg(long, global = true, env = "OMS_STATE_MACHINE_ARN")]
    state_machine_arn: Option<String>,
    /// The order-amend machine [default: AmendStateMachineArn in --stack-outputs; without
    /// it, PATCH /orders/{id} answers Amendments.Unavailable].
    #[arg(long, global = true, env = "OMS_AMEND_MACHINE_ARN")]
    amend_machine_arn: Option<String>,
    /// A Step Functions API other than AWS's (e.g. `oms up`'s).
    #[arg(long, global = true, env = "OMS_SFN_ENDPOINT")]
    sfn_endpoint: Option<String>,
    /// A DynamoDB API other than AWS's (e.g. DynamoDB Local).
    #[arg(long, global = true, env = "OMS_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
}

impl BackendArgs {
    /// The deployed stack, when the backend is AWS.
    fn aws(&self) -> Option<aws::AwsTarget> {
        (self.backend == Backend::Aws).then(|| aws::AwsTarget {
            stack_outputs: self.stack_outputs.clone(),
            table: self.table.clone(),
            state_machine_arn: self.state_machine_arn.clone(),
            amend_machine_arn: self.amend_machine_arn.clone(),
            sfn_endpoint: self.sfn_endpoint.clone(),
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Step Functions API, durably, from a local data dir.
    Up(up::UpArgs),
    // The order commands (submit, orders, executions, faults), defined in cli.rs.
    #[command(flatten)]
    Client(cli::Request),
    /// Run the activities as a Step Functions Activity worker (GetActivityTask).
    Worker(worker::WorkerArgs),
    /// Submit many orders and report how they ended and how long they took.
    Load(load::LoadArgs),
    /// Estimate the monthly AWS bill of the order saga (Step Functions, Lambda,
    /// DynamoDB, logs, tracing, API Gateway, KMS) from a simulation of each of its paths
    /// with the real activities.
    Cost(cost::CostArgs),
    /// Run a state machine in memory and print how it ended, as one JSON object.
    Exec(exec::ExecArgs),
    /// Validate definitions as CreateStateMachine would; exit 1 if any has an error.
    Validate(exec::ValidateArgs),
    /// Measure executions per second and latency of one machine: in memory, or with
    /// --durable through the durable runtime (SQLite, fsync on every commit).
    Bench(bench::BenchArgs),
    /// Evaluate a JSONata expression and print how it ended, as one JSON object.
    Jsonata(jsonata_cli::JsonataArgs),
    /// Write orders, their lines, shipments and ledger as Parquet or CSV tables, for
    /// an analytics warehouse (docs/deploy.md).
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if prints_and_exits(&cli.command) {
        default_sigpipe();
    }
    let target = match cli.backend.aws() {
        Some(stack) => client::Target::Aws(stack),
        None => client::Target::Http(cli.endpoint, cli.token),
    };
    let backend = cli.backend;
    let result = match cli.command {
        Command::Up(args) => up::up(args, backend.aws(), backend.dynamodb_endpoint),
        Command::Client(request) => cli::run(target, cli.output, request),
        Command::Worker(args) => {
            worker::worker(args, backend.sfn_endpoint, backend.dynamodb_endpoint)
        }
        Command::Load(args) => load::run(target, cli.output, args),
        Command::Cost(args) => cost::cost(args, cli.output),
        Command::Exec(args) => exec::exec(args),
        Command::Validate(args) => exec::validate(args),
        Command::Bench(args) => bench::bench_command(args),
        Command::Jsonata(args) => jsonata_cli::jsonata(args),
        Command::Export(args) => export::export(args, backend.dynamodb_endpoint),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("oms: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Whether a mode prints its answer and ends (the client commands, exec, validate,
/// cost, load, jsonata), as opposed to the long-running server, worker and bench.
fn prints_and_exits(command: &Command) -> bool {
    !matches!(
        command,
        Command::Up(_) | Command::Worker(_) | Command::Bench(_)
    )
}

/// `oms ... | head` ends quietly, as Unix tools do, instead of panicking on the closed
/// pipe: Rust starts programs with SIGPIPE ignored, so a write to a closed pipe is an
/// error that `println!` turns into a panic. The servers keep it ignored (a client that
/// hangs up must not kill them).
fn default_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists; it only
    // restores the signal's default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
