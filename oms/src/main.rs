//! `oms`: the one binary users run: `oms up` (the Step Functions API and the Orders
//! API), the order CLI that talks to it, and tools that run, validate and benchmark
//! state machines in memory.

mod auth;
mod aws;
mod bench;
mod cli;
mod cost;
mod exec;
mod hosts;
mod invoker;
mod load;
mod orders;
mod orders_http;
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
    output: cli::Output,
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
            sfn_endpoint: self.sfn_endpoint.clone(),
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
        })
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ClockKind {
    /// Wall-clock time: Wait states really wait.
    Real,
    /// Virtual time: Waits, backoffs and timeouts pass at once.
    Virtual,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Step Functions API, durably, from a local data dir.
    Up {
        /// Address to listen on.
        #[arg(long, env = "OMS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the SQLite database lives.
        #[arg(long, env = "OMS_DATA_DIR", default_value = ".oms")]
        data_dir: std::path::PathBuf,
        /// The configuration file (task routing); ./oms.toml when present.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Leave pick requests to the warehouses' callbacks (POST /shipments/{id}/picked)
        /// instead of simulating a warehouse that picks every shipment.
        #[arg(long, env = "OMS_MANUAL_PICKING")]
        manual_picking: bool,
        /// How long the simulated warehouse takes to pick a shipment.
        #[arg(long, env = "OMS_PICK_DELAY_MS", default_value_t = 200)]
        pick_delay_ms: u64,
        /// The activities' store: sqlite:PATH or dynamodb:TABLE [default: orders.db
        /// in the data dir].
        #[arg(long, env = "OMS_STORE")]
        store: Option<String>,
        /// Require credentials on loopback too (they are always required off it):
        /// docs/security.md.
        #[arg(long, env = "OMS_REQUIRE_AUTH")]
        require_auth: bool,
        /// Serve /admin/faults and inject the faults it sets (tests, game days).
        #[arg(long, env = "OMS_FAULT_INJECTION")]
        fault_injection: bool,
        /// Encrypt the data dir's databases with the key in this file (64 hex
        /// characters; or the key itself in OMS_DB_KEY): docs/security.md.
        #[arg(long, env = "OMS_DB_KEY_FILE")]
        db_key_file: Option<std::path::PathBuf>,
        /// Run the SQLite stores on the power-loss VFS and cut the power at this sync of
        /// a database or WAL, losing what was not synced (tests: docs/store.md); 0
        /// only counts syncs.
        #[arg(long, hide = true, env = "OMS_POWER_LOSS_AT_SYNC")]
        power_loss_at_sync: Option<u64>,
        /// With --power-loss-at-sync: a part of the unsynced writes chosen by this seed
        /// lands on the disk at the cut, one of them torn.
        #[arg(long, hide = true, requires = "power_loss_at_sync")]
        power_loss_seed: Option<u64>,
        /// On loopback, a Host name to answer besides localhost, 127.0.0.1 and [::1]
        /// (`name` for any port, `name:port` for one); repeatable. Others get 403
        /// Request.HostNotAllowed (DNS rebinding): docs/security.md.
        #[arg(
            long = "allowed-host",
            env = "OMS_ALLOWED_HOSTS",
            value_delimiter = ','
        )]
        allowed_hosts: Vec<String>,
        /// Retention of closed executions in seconds, instead of oms.toml's
        /// retention_days (tests).
        #[arg(long, hide = true)]
        retention_seconds: Option<u64>,
        /// Seconds between retention prunes; one also runs at start.
        #[arg(long, hide = true, default_value_t = 3600)]
        prune_every_seconds: u64,
        /// Receive this many more units of every demo SKU at each demo warehouse, once
        /// per data dir (the soak benchmark's stock).
        #[arg(long, hide = true)]
        bench_stock: Option<u32>,
    },
    /// Submit an order (a JSON file, `-` for stdin, or the JSON itself).
    Submit { order: String },
    /// Orders: list, show, cancel, retry.
    #[command(subcommand)]
    Orders(cli::OrdersCmd),
    /// The order saga's executions: list, show (the history).
    #[command(subcommand)]
    Executions(cli::ExecutionsCmd),
    /// Fault injection of the activities: set, clear, show.
    #[command(subcommand)]
    Faults(cli::FaultsCmd),
    /// Run the activities as a Step Functions Activity worker (GetActivityTask).
    Worker {
        /// Activity ARNs are this and the activity's function name.
        #[arg(
            long,
            default_value = "arn:aws:states:us-east-1:000000000000:activity:oms-"
        )]
        activity_arn_prefix: String,
        /// The activities' store: sqlite:PATH or dynamodb:TABLE.
        #[arg(long, env = "OMS_STORE")]
        store: String,
        /// The worker name GetActivityTask records.
        #[arg(long, default_value = "oms-worker")]
        name: String,
        /// Seconds between heartbeats while a task runs.
        #[arg(long, default_value_t = 20)]
        heartbeat_seconds: u64,
    },
    /// Submit many orders and report how they ended and how long they took.
    Load {
        #[arg(long, default_value_t = 100)]
        orders: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Fail this fraction of every activity's calls transiently while loading.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Then audit the books through the Orders API: every order COMPLETED or
        /// CANCELLED (those left COMPENSATION_FAILED retried once faults are cleared),
        /// paid for exactly, stock balanced. The server must have no other orders in
        /// flight.
        #[arg(long)]
        check: bool,
        /// Also report latency for this many equal slices of the run.
        #[arg(long, default_value_t = 1)]
        windows: usize,
    },
    /// Estimate the monthly AWS bill of the order saga (Step Functions, Lambda,
    /// DynamoDB, logs, tracing, API Gateway, KMS) from a simulation of each of its paths
    /// with the real activities.
    Cost {
        /// Orders a day.
        #[arg(long)]
        orders_per_day: u64,
        /// The share of orders that fail a forward step (reserve, charge, pick or ship)
        /// and compensate, spread evenly over those four paths.
        #[arg(long, default_value_t = 0.02)]
        compensation_rate: f64,
        /// The share of orders the saga rejects at PlaceOrder (the Orders API checks
        /// orders before starting the saga, so this is rare).
        #[arg(long, default_value_t = 0.0)]
        rejection_rate: f64,
        /// Assumed billed duration of one Lambda invocation, in milliseconds.
        #[arg(long, default_value_t = cost::DEFAULT_LAMBDA_MS)]
        lambda_ms: u64,
        /// Shipments per order (the demo order split over this many warehouses).
        #[arg(long, default_value_t = 1)]
        shipments: usize,
    },
    /// Run a state machine in memory and print how it ended, as one JSON object.
    Exec {
        /// The state machine definition (ASL JSON).
        #[arg(long)]
        definition: PathBuf,
        /// The execution input, as JSON text.
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// A file holding the execution input.
        #[arg(long)]
        input_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "real")]
        clock: ClockKind,
        /// Also print the execution history (events as GetExecutionHistory shapes them).
        #[arg(long)]
        history: bool,
    },
    /// Validate definitions as CreateStateMachine would; exit 1 if any has an error.
    Validate {
        files: Vec<PathBuf>,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
        /// Validate as an Express state machine.
        #[arg(long)]
        express: bool,
    },
    /// Measure executions per second and latency of one machine: in memory, or with
    /// --durable through the durable runtime (SQLite, fsync on every commit).
    Bench {
        #[arg(long)]
        definition: PathBuf,
        /// How many executions to measure [default: 20000 in memory, 2000 durable].
        #[arg(long)]
        executions: Option<usize>,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// A fixed input for every execution. Without it, execution i gets
        /// {"orderId": "o-i", "amount": i % 200}, as the peer benchmark does.
        #[arg(long)]
        input: Option<String>,
        /// Run executions through the durable runtime, as `oms up` does; `bench-*`
        /// Lambda functions go to the built-in bench handlers (see shared/bench).
        #[arg(long)]
        durable: bool,
        /// Where the durable bench keeps its database [default: a fresh temporary
        /// folder, deleted afterwards].
        #[arg(long, requires = "durable")]
        data_dir: Option<PathBuf>,
        /// oms.toml whose [[tasks]] rules route the durable bench's tasks.
        #[arg(long, requires = "durable")]
        config: Option<PathBuf>,
        /// Durable executions run before the measured ones, 8 at a time.
        #[arg(long, requires = "durable", default_value_t = 200)]
        warmup: usize,
        /// How every measured durable execution must end: STATUS or STATUS:ERROR
        /// (e.g. FAILED:Saga.Compensated); exit 2 otherwise.
        #[arg(long, requires = "durable")]
        expect: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = cli.output;
    let aws = cli.backend.aws();
    let sfn_endpoint = cli.backend.sfn_endpoint.clone();
    let dynamodb_endpoint = cli.backend.dynamodb_endpoint.clone();
    let target = match &aws {
        Some(stack) => cli::Target::Aws(stack.clone()),
        None => cli::Target::Http(cli.endpoint.clone(), cli.token.clone()),
    };
    let order_cmd = |request| cli::run(target, output, request);
    let result = match cli.command {
        Command::Submit { order } => order_cmd(cli::Request::Submit(order)),
        Command::Orders(c) => order_cmd(cli::Request::Orders(c)),
        Command::Executions(c) => order_cmd(cli::Request::Executions(c)),
        Command::Faults(c) => order_cmd(cli::Request::Faults(c)),
        Command::Worker {
            activity_arn_prefix,
            store,
            name,
            heartbeat_seconds,
        } => worker::worker(worker::WorkerArgs {
            activity_arn_prefix,
            store,
            sfn_endpoint,
            dynamodb_endpoint: dynamodb_endpoint.clone(),
            name,
            heartbeat: std::time::Duration::from_secs(heartbeat_seconds),
        }),
        Command::Load {
            orders,
            concurrency,
            fault_rate,
            check,
            windows,
        } => order_cmd(cli::Request::Load(load::LoadArgs {
            orders,
            concurrency,
            fault_rate,
            check,
            windows,
        })),
        Command::Up {
            listen,
            data_dir,
            config,
            manual_picking,
            pick_delay_ms,
            store,
            require_auth,
            fault_injection,
            db_key_file,
            power_loss_at_sync,
            power_loss_seed,
            allowed_hosts,
            retention_seconds,
            prune_every_seconds,
            bench_stock,
        } => up::up(up::UpArgs {
            listen,
            data_dir,
            config,
            require_auth,
            fault_injection,
            db_key_file,
            power_loss: power_loss_at_sync.map(|at| powerloss::Plan {
                cut_at_sync: (at > 0).then_some(at),
                landed_seed: power_loss_seed,
            }),
            allowed_hosts,
            retention_seconds,
            prune_every: std::time::Duration::from_secs(prune_every_seconds),
            bench_stock,
            simulate_warehouse: !manual_picking,
            store,
            dynamodb_endpoint,
            aws,
            pick_delay: std::time::Duration::from_millis(pick_delay_ms),
        }),
        Command::Cost {
            orders_per_day,
            compensation_rate,
            rejection_rate,
            lambda_ms,
            shipments,
        } => cost::cost(cost::CostArgs {
            orders_per_day,
            compensation_rate,
            rejection_rate,
            lambda_ms,
            shipments,
            output,
        }),
        Command::Exec {
            definition,
            input,
            input_file,
            clock,
            history,
        } => exec::exec(
            &definition,
            input.as_deref(),
            input_file.as_deref(),
            clock,
            history,
        ),
        Command::Validate {
            files,
            json,
            express,
        } => exec::validate(&files, json, express),
        Command::Bench {
            definition,
            executions,
            concurrency,
            input,
            durable: true,
            data_dir,
            config,
            warmup,
            expect,
        } => bench::bench_durable(bench::DurableArgs {
            definition: &definition,
            executions: executions.unwrap_or(2_000),
            concurrency,
            input: input.as_deref(),
            data_dir: data_dir.as_deref(),
            config: config.as_deref(),
            warmup,
            expect: expect.as_deref(),
        }),
        Command::Bench {
            definition,
            executions,
            concurrency,
            input,
            ..
        } => bench::bench(
            &definition,
            executions.unwrap_or(20_000),
            concurrency,
            input.as_deref(),
        ),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("oms: {msg}");
            ExitCode::from(2)
        }
    }
}
