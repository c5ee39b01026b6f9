//! The JSONata state's cost beside the JSONPath state's: the same small order workflow
//! written in each language (xtask/bench/jsonpath-states.asl.json and
//! jsonata-states.asl.json, state for state), each run by `oms bench` (in memory, one
//! thread) in the same round. Issue 14's target: a JSONata state costs at most 1.5x
//! the equivalent JSONPath one, read here as executions/s of the JSONPath machine over
//! the JSONata one's.

use crate::tools::run_status;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The most a JSONata execution may cost, as a multiple of the JSONPath one's.
pub const TARGET_COST_RATIO: f64 = 1.5;

/// Executions per `oms bench` run: about a second of each machine here.
const EXECUTIONS: &str = "20000";

/// Medians over the rounds, executions per second.
#[derive(Debug, Clone, PartialEq)]
pub struct StateCost {
    pub jsonpath_per_s: f64,
    pub jsonata_per_s: f64,
    pub rounds: usize,
}

impl StateCost {
    /// How many times a JSONPath execution's cost a JSONata execution costs.
    pub fn cost_ratio(&self) -> f64 {
        self.jsonpath_per_s / self.jsonata_per_s.max(f64::MIN_POSITIVE)
    }

    pub fn target(&self) -> (String, String, Option<bool>) {
        let r = self.cost_ratio();
        (
            format!("a JSONata state costs at most {TARGET_COST_RATIO}x the JSONPath one"),
            format!(
                "{r:.2}x ({:.0} vs {:.0} executions/s)",
                self.jsonata_per_s, self.jsonpath_per_s
            ),
            Some(r <= TARGET_COST_RATIO),
        )
    }

    pub fn markdown(&self) -> String {
        format!(
            "\nThe same order workflow (a Pass with Output and Assign, a Choice, two Pass \
             states, a Map over three lines with an ItemSelector, a final Pass reading a \
             variable) in each language, xtask/bench/*-states.asl.json, run by `oms bench \
             --executions {EXECUTIONS}` (release, in memory, one thread), the two \
             alternating in each of {} rounds, medians: JSONPath {:.0} executions/s, \
             JSONata {:.0}; a JSONata execution costs **{:.2}x** a JSONPath one.\n",
            self.rounds,
            self.jsonpath_per_s,
            self.jsonata_per_s,
            self.cost_ratio()
        )
    }
}

/// Builds oms in release and measures both machines `rounds` times.
pub fn measure(root: &Path, target: &Path, rounds: usize) -> Result<StateCost, String> {
    eprintln!("bench: cargo build --release -p oms (the state cost pair)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_status(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "oms"])
            .current_dir(root),
        "cargo build --release -p oms",
    )?;
    let oms = target.join("release/oms");
    let (mut path, mut ata) = (Vec::new(), Vec::new());
    for round in 1..=rounds.max(1) {
        eprintln!("bench: state cost round {round} of {rounds}");
        path.push(one(
            &oms,
            &root.join("xtask/bench/jsonpath-states.asl.json"),
        )?);
        ata.push(one(
            &oms,
            &root.join("xtask/bench/jsonata-states.asl.json"),
        )?);
    }
    Ok(StateCost {
        jsonpath_per_s: median(path),
        jsonata_per_s: median(ata),
        rounds: rounds.max(1),
    })
}

/// One `oms bench` run's executions per second; a run whose machine did not succeed
/// is an error (a fast failure is not a fast machine).
fn one(oms: &Path, definition: &Path) -> Result<f64, String> {
    let input = r#"{"orderId":"o-1","amount":150}"#;
    let out = Command::new(oms)
        .arg("exec")
        .arg("--definition")
        .arg(definition)
        .args(["--input", input])
        .output()
        .map_err(|e| format!("oms exec: {e}"))?;
    let ran: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("oms exec {}: no JSON: {e}", definition.display()))?;
    if ran["status"] != "SUCCEEDED" {
        return Err(format!("{} does not succeed: {ran}", definition.display()));
    }
    let out = Command::new(oms)
        .arg("bench")
        .arg("--definition")
        .arg(definition)
        .args(["--executions", EXECUTIONS])
        .output()
        .map_err(|e| format!("oms bench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("oms bench {}: no JSON line: {e}", definition.display()))?;
    v["exec_per_s"]
        .as_f64()
        .ok_or_else(|| format!("oms bench {}: no exec_per_s in {v}", definition.display()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_jsonpath_over_jsonata() {
        let c = StateCost {
            jsonpath_per_s: 30.0,
            jsonata_per_s: 20.0,
            rounds: 1,
        };
        assert_eq!(c.cost_ratio(), 1.5);
        assert_eq!(c.target().2, Some(true));
        let slow = StateCost {
            jsonata_per_s: 10.0,
            ..c
        };
        assert_eq!(slow.target().2, Some(false));
    }
}
