//! `cargo xtask chaos [ARGS]`: the long chaos campaign (tests/api/chaos.py) against a
//! release build of `oms up`: by default 2,000 orders, 20 kill -9 and 3 SIGSTOP pauses,
//! transient faults at every activity and compensation, kills aimed at compensations,
//! Maps of shipments and redrives. ARGS go to chaos.py (`--orders`, `--kills`,
//! `--pauses`, `--fault-rate`, `--rate`, `--seed`, `--store dynamodb` with
//! `--throttle-rate` and `--drop-rate`). It fails when the campaign finds a violation.
//! The suite runs a short campaign of each store (tests/api/test_chaos.py).
//!
//! `cargo xtask chaos --power-loss [ARGS]`: the power-loss campaign instead
//! (tests/api/power_loss.py): by default 50 crash points, each a power cut at a sync
//! drawn from a run's range, where the unsynced writes of the SQLite stores are lost
//! (or, seeded, partly land and one is torn); then no acknowledged order may be lost
//! and the books must balance. ARGS go to power_loss.py (`--crash-points`,
//! `--orders`, `--rate`, `--seed`). The suite runs a few (tests/api/test_power_loss.py).

use crate::tools;
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let python = tools::python_tools(root)?;
    // DynamoDB Local, for `--store dynamodb`.
    tools::node_tools(root)?;
    println!("chaos: cargo build --release -p oms");
    tools::run_status(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "oms"])
            .current_dir(root),
        "cargo build --release -p oms",
    )?;
    let oms = root.join("target/release/oms");
    if args.first().map(String::as_str) == Some("--power-loss") {
        return tools::run_status(
            Command::new(&python)
                .arg("tests/api/power_loss.py")
                .args(&args[1..])
                .env("OMS_BIN", &oms)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(root),
            "the power-loss campaign (tests/api/power_loss.py)",
        );
    }
    tools::run_status(
        Command::new(&python)
            .arg("tests/api/chaos.py")
            .args(args)
            .env("OMS_BIN", &oms)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(root),
        "the chaos campaign (tests/api/chaos.py)",
    )
}
