//! `oms`: the one binary users run: `oms up` (the durable local Step Functions API),
//! and tools that run, validate and benchmark state machines in memory.

mod bench;
mod exec;
mod invoker;
mod server;
mod up;

use clap::{Parser, Subcommand, ValueEnum};
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
    /// Measure in-memory executions per second and latency of one machine.
    Bench {
        #[arg(long)]
        definition: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        executions: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// A fixed input for every execution. Without it, execution i gets
        /// {"orderId": "o-i", "amount": i % 200}, as the peer benchmark does.
        #[arg(long)]
        input: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            listen,
            data_dir,
            config,
        } => up::up(up::UpArgs {
            listen,
            data_dir,
            config,
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
        } => bench::bench(&definition, executions, concurrency, input.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("oms: {msg}");
            ExitCode::from(2)
        }
    }
}
