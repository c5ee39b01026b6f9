//! `cargo xtask bench`'s JSONata section: the `jsonata` crate beside jsonata-js on the
//! document and expressions of ../shared/jsonata-suite/bench-reference.mjs, both
//! measured in the same run (issue 14's Speed: at least 20x jsonata-js's evaluations/s
//! compiled once, 10x compiled each time).
//!
//! The suite's folder stays outside the repo: its script is run where it is, and the
//! Rust harness (jsonata/examples/bench.rs) reads the document, the expressions and
//! jsonata-js's results from a spec file written under target/ by a small script here.

use crate::tools::run_status;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The jsonata-js version bench-reference.mjs's header installs (the suite's is 2.2.2).
const JSONATA_JS: &str = "jsonata@2.2.2";
/// Targets from the issue: this many times jsonata-js's evaluations/s ...
const TARGET_ONCE: f64 = 20.0;
/// ... and when the expression is compiled on every evaluation.
const TARGET_EACH: f64 = 10.0;

pub const SECTION_START: &str = "<!-- jsonata: written by cargo xtask bench -->";
pub const SECTION_END: &str = "<!-- /jsonata -->";

/// Writes the spec the Rust harness reads: the script's DOC and EXPRESSIONS, and what
/// jsonata-js makes of each (the harness checks its own results against them).
const SPEC_SCRIPT: &str = r#"
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
const m = await import(pathToFileURL(process.argv[2]).href);
const jsonata = createRequire(import.meta.url)(process.env.JSONATA_PATH);
const expected = {};
for (const [name, src] of Object.entries(m.EXPRESSIONS)) expected[name] = await jsonata(src).evaluate(m.DOC);
console.log(JSON.stringify({ doc: m.DOC, expressions: m.EXPRESSIONS, expected }));
"#;

/// One expression's medians, evaluations/s.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    name: String,
    js_once: f64,
    js_each: f64,
    /// `Compiled::evaluate_input`: parsed once, document converted once.
    once: f64,
    /// `Compiled::evaluate`: parsed once, document converted from serde_json each time.
    once_json: f64,
    /// `Compiled::new` + `evaluate_input` every time.
    each: f64,
    /// `jsonata::evaluate`: parse, convert and evaluate every time.
    each_json: f64,
}

pub struct JsonataReport {
    seconds: f64,
    js_version: String,
    doc_bytes: u64,
    rows: Vec<Row>,
    /// The 1-minute load average before and after the run: the machine is shared.
    load: (String, String),
    rounds: usize,
    /// A JSONata execution beside the same workflow in JSONPath (bench_states.rs).
    states: Option<crate::bench_states::StateCost>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The suite's folder: beside the repository, or the folder of `$JSONATA_SUITE` (the
/// cases file `cargo test -p jsonata` reads).
fn suite_dir(root: &Path) -> PathBuf {
    match std::env::var_os("JSONATA_SUITE") {
        Some(cases) => PathBuf::from(cases)
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        None => root.join("../shared/jsonata-suite"),
    }
}

/// Why the section cannot run here, if it cannot: the script or node is missing.
pub fn unavailable(root: &Path) -> Option<String> {
    let script = suite_dir(root).join("bench-reference.mjs");
    if !script.is_file() {
        return Some(format!(
            "{} is missing (the JSONata suite's folder beside the repository, or the \
             folder of $JSONATA_SUITE): neither jsonata-js nor the jsonata crate was measured",
            script.display()
        ));
    }
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!(
                "{tool} is not installed: jsonata-js cannot run, and the document and \
                 expressions live in its script, so neither side was measured"
            ));
        }
    }
    None
}

/// Installs jsonata-js under target/bench/jsonata-js once, returning its package path.
fn install_jsonata_js(target: &Path) -> Result<PathBuf, String> {
    let dir = target.join("bench/jsonata-js");
    let package = dir.join("node_modules/jsonata");
    let wanted = JSONATA_JS.split_once('@').map_or("", |(_, v)| v);
    let installed = std::fs::read_to_string(package.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|p| p["version"] == wanted);
    if !installed {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        eprintln!("bench: npm install {JSONATA_JS} in {}", dir.display());
        run_status(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(JSONATA_JS),
            "npm install jsonata",
        )?;
    }
    Ok(package)
}

fn capture(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the harness, then measures jsonata-js and the crate back to back, `rounds`
/// times: the machine is shared, so each round pairs the two sides in the same minute
/// and the report keeps the median of each figure over the rounds.
pub fn run(
    root: &Path,
    target: &Path,
    seconds: f64,
    rounds: usize,
) -> Result<JsonataReport, String> {
    let script = suite_dir(root)
        .join("bench-reference.mjs")
        .canonicalize()
        .map_err(|e| format!("bench-reference.mjs: {e}"))?;
    eprintln!("bench: cargo build --release -p jsonata --example bench");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_status(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "jsonata", "--example", "bench"])
            .current_dir(root),
        "cargo build --release -p jsonata --example bench",
    )?;
    let package = install_jsonata_js(target)?;
    let work = target.join("bench/jsonata-js");
    let spec_script = work.join("spec.mjs");
    std::fs::write(&spec_script, SPEC_SCRIPT).map_err(|e| e.to_string())?;
    let spec = capture(
        Command::new("node")
            .arg(&spec_script)
            .arg(&script)
            .env("JSONATA_PATH", &package),
        "the spec script",
    )?;
    let spec_path = work.join("spec.json");
    std::fs::write(&spec_path, spec).map_err(|e| e.to_string())?;

    let load_before = load_average();
    let mut reports = Vec::new();
    for round in 1..=rounds {
        eprintln!("bench: JSONata round {round} of {rounds}");
        reports.push(one_round(
            &script, &package, &work, &spec_path, target, seconds,
        )?);
    }
    let mut report = median_report(reports).ok_or("no rounds")?;
    report.states = Some(crate::bench_states::measure(root, target, rounds)?);
    report.load = (load_before, load_average());
    Ok(report)
}

fn one_round(
    script: &Path,
    package: &Path,
    work: &Path,
    spec_path: &Path,
    target: &Path,
    seconds: f64,
) -> Result<JsonataReport, String> {
    let secs = seconds.to_string();
    eprintln!("bench: jsonata-js ({script:?}, {secs} s per run)");
    let js: Value = serde_json::from_str(&capture(
        Command::new("node")
            .arg(script)
            .args(["--json", "--seconds", &secs])
            .env("JSONATA_PATH", package)
            .current_dir(work),
        "bench-reference.mjs",
    )?)
    .map_err(|e| format!("bench-reference.mjs printed no JSON: {e}"))?;
    eprintln!("bench: the jsonata crate (jsonata/examples/bench.rs)");
    let rust: Value = serde_json::from_str(&capture(
        Command::new(target.join("release/examples/bench"))
            .arg(spec_path)
            .args(["--seconds", &secs]),
        "the jsonata bench harness",
    )?)
    .map_err(|e| format!("the jsonata harness printed no JSON: {e}"))?;
    report(&js, &rust, seconds)
}

/// Each figure's median over the rounds (rows matched by position: every round
/// measures the same expressions in the same order).
fn median_report(mut reports: Vec<JsonataReport>) -> Option<JsonataReport> {
    let first = reports.first()?;
    let rows = (0..first.rows.len())
        .map(|i| {
            let m = |f: fn(&Row) -> f64| median(reports.iter().map(|r| f(&r.rows[i])).collect());
            Row {
                name: first.rows[i].name.clone(),
                js_once: m(|r| r.js_once),
                js_each: m(|r| r.js_each),
                once: m(|r| r.once),
                once_json: m(|r| r.once_json),
                each: m(|r| r.each),
                each_json: m(|r| r.each_json),
            }
        })
        .collect();
    let rounds = reports.len();
    let mut out = reports.swap_remove(0);
    out.rows = rows;
    out.rounds = rounds;
    Some(out)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Joins the two sides' JSON outputs by expression.
fn report(js: &Value, rust: &Value, seconds: f64) -> Result<JsonataReport, String> {
    let js_results = js["results"].as_object().ok_or("jsonata-js: no results")?;
    let mut rows = Vec::new();
    for (name, r) in js_results {
        let ours = &rust["results"][name];
        let num =
            |v: &Value, what: &str| v.as_f64().ok_or_else(|| format!("{name}: {what} missing"));
        let mode = |m: &str| num(&ours[m]["evals_per_s"], m);
        rows.push(Row {
            name: name.clone(),
            js_once: num(&r["compiled_once_evals_per_s"], "jsonata-js compiled once")?,
            js_each: num(&r["compile_each_time_evals_per_s"], "jsonata-js each time")?,
            once: mode("compiled_once")?,
            once_json: mode("compiled_once_json_input")?,
            each: mode("compile_each_time")?,
            each_json: mode("compile_each_time_json_input")?,
        });
    }
    Ok(JsonataReport {
        seconds,
        js_version: js["jsonata"].as_str().unwrap_or("?").to_string(),
        doc_bytes: js["doc_bytes"].as_u64().unwrap_or(0),
        rows,
        load: Default::default(),
        rounds: 1,
        states: None,
    })
}

fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs > 0.0 {
        ours / theirs
    } else {
        f64::NAN
    }
}

impl JsonataReport {
    /// (target, measured, met) per expression and mode.
    pub fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        for r in &self.rows {
            for (mode, ours, theirs, target) in [
                ("compiled once", r.once, r.js_once, TARGET_ONCE),
                ("compiled each time", r.each, r.js_each, TARGET_EACH),
            ] {
                let x = ratio(ours, theirs);
                out.push((
                    format!(
                        "JSONata {} {mode}: at least {target:.0}x jsonata-js",
                        r.name
                    ),
                    format!("{x:.1}x ({ours:.0} vs {theirs:.0} evals/s)"),
                    Some(x >= target),
                ));
            }
        }
        out.extend(self.states.as_ref().map(|s| s.target()));
        out
    }

    pub fn print(&self) {
        println!();
        if let Some(s) = &self.states {
            let (_, measured, _) = s.target();
            println!("jsonata state cost vs jsonpath: {measured}");
        }
        for r in &self.rows {
            println!(
                "jsonata {}: compiled once {:.0} vs jsonata-js {:.0} evals/s ({:.1}x); \
                 each time {:.0} vs {:.0} ({:.1}x)",
                r.name,
                r.once,
                r.js_once,
                ratio(r.once, r.js_once),
                r.each,
                r.js_each,
                ratio(r.each, r.js_each)
            );
        }
    }

    pub fn markdown(&self, command: &str, date: &str, commit: &str) -> String {
        let mut t = String::from(
            "| expression | jsonata-js once | jsonata once | ratio | jsonata-js each time \
             | jsonata each time | ratio | once, JSON input | each time, JSON input |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            t.push_str(&format!(
                "| {} | {:.0} | {:.0} | **{:.1}x** | {:.0} | {:.0} | **{:.1}x** | {:.0} | {:.0} |\n",
                r.name,
                r.js_once,
                r.once,
                ratio(r.once, r.js_once),
                r.js_each,
                r.each,
                ratio(r.each, r.js_each),
                r.once_json,
                r.each_json
            ));
        }
        let mut targets = String::from("| target | measured | met |\n|---|---|---|\n");
        for (what, measured, met) in self.targets() {
            let verdict = if met == Some(true) { "yes" } else { "**no**" };
            targets.push_str(&format!("| {what} | {measured} | {verdict} |\n"));
        }
        format!(
            "{SECTION_START}\n## JSONata beside jsonata-js\n\n\
             - Command: `{command}`{alone}\n- Date: {date}\n- Commit: {commit}\n\
             - Load average (1 min, 2 cores shared with other work): {l0} before, {l1} \
             after. Under load jsonata-js loses more than the crate (its JIT and GC \
             threads compete for the same cores), so a loaded run flatters the ratios; \
             docs/jsonata.md has quiet-machine figures beside loaded ones.\n\n\
             ../shared/jsonata-suite/bench-reference.mjs (jsonata-js {js}, its {bytes}-byte \
             order and three expressions) and jsonata/examples/bench.rs (the `jsonata` \
             crate, release build, the same document and expressions, its results checked \
             against jsonata-js's first) run back to back in each of {rounds} rounds; each \
             side's figure is the median of 3 runs of {secs} s after a warm-up, and the \
             table holds each figure's median over the rounds, in evaluations per second with the default 10 s \
             time limit on. *once*: parsed once, evaluated many times (`Compiled::\
             evaluate_input`, the document converted to the engine's form once, as \
             jsonata-js's is a JavaScript object already). *each time*: parsed on every \
             evaluation (`Compiled::new` + `evaluate_input`). The *JSON input* columns \
             convert the serde_json document on every evaluation too (`Compiled::evaluate`, \
             `jsonata::evaluate`). Ratios are jsonata/jsonata-js.\n\n{t}{states}\n{targets}{SECTION_END}\n",
            states = self.states.as_ref().map(|s| s.markdown()).unwrap_or_default(),
            js = self.js_version,
            bytes = self.doc_bytes,
            secs = self.seconds,
            rounds = self.rounds,
            alone = if command.contains("--no-machine10 --no-saga4") {
                String::new()
            } else {
                " (this section alone: `cargo xtask bench --no-machine10 --no-saga4`)".into()
            },
            l0 = self.load.0,
            l1 = self.load.1,
        )
    }
}

/// The section for a run where it could not be measured, saying why.
pub fn not_run_markdown(why: &str) -> String {
    format!(
        "{SECTION_START}\n## JSONata beside jsonata-js\n\nNot measured in this run: {why}.\n\
         {SECTION_END}\n"
    )
}

/// The JSONata section of `text`, if any.
pub fn section(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = text[a..].find(SECTION_END)? + a;
    Some(&text[a..b + SECTION_END.len()])
}

/// `text` with its JSONata section replaced by `new` (inserted before the soak
/// section, or at the end, when it has none).
pub fn replace_section(text: &str, new: &str) -> String {
    let new = new.trim_end();
    if let Some(old) = section(text) {
        return text.replacen(old, new, 1);
    }
    match text.find(crate::soak::SECTION_START) {
        Some(at) => format!("{}{new}\n\n{}", &text[..at], &text[at..]),
        None => format!("{}\n\n{new}\n", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_join_both_sides_by_expression() {
        let js = json!({"jsonata": "2.2.2", "doc_bytes": 5115, "results": {
            "a": {"compiled_once_evals_per_s": 1000, "compile_each_time_evals_per_s": 500}}});
        let mode = |n: f64| json!({"evals_per_s": n});
        let rust = json!({"results": {"a": {
            "compiled_once": mode(25000.0), "compiled_once_json_input": mode(9000.0),
            "compile_each_time": mode(4000.0), "compile_each_time_json_input": mode(3000.0)}}});
        let r = report(&js, &rust, 2.0).expect("joins");
        let t = r.targets();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].2, Some(true), "25x meets 20x: {t:?}");
        assert_eq!(t[1].2, Some(false), "8x misses 10x: {t:?}");
        let missing = json!({"results": {}});
        assert!(report(&js, &missing, 2.0).is_err());
    }

    #[test]
    fn rounds_keep_each_figures_median() {
        let round = |js_once: f64, once: f64| JsonataReport {
            seconds: 1.0,
            js_version: "2.2.2".into(),
            doc_bytes: 1,
            rows: vec![Row {
                name: "a".into(),
                js_once,
                js_each: 1.0,
                once,
                once_json: 1.0,
                each: 1.0,
                each_json: 1.0,
            }],
            load: Default::default(),
            rounds: 1,
            states: None,
        };
        let m = median_report(vec![round(3.0, 10.0), round(1.0, 30.0), round(2.0, 20.0)])
            .expect("three rounds");
        assert_eq!(
            (m.rows[0].js_once, m.rows[0].once, m.rounds),
            (2.0, 20.0, 3)
        );
        assert!(median_report(Vec::new()).is_none());
    }

    #[test]
    fn the_section_is_replaced_in_place_or_put_before_the_soak() {
        let soak = crate::soak::SECTION_START;
        let doc = format!("# B\n\n{SECTION_START}\nold\n{SECTION_END}\n\n{soak}\ns\n");
        let new = format!("{SECTION_START}\nnew\n{SECTION_END}\n");
        let out = replace_section(&doc, &new);
        assert!(out.contains("new") && !out.contains("old") && out.contains(soak));
        let fresh = replace_section(&format!("# B\n\n{soak}\ns\n"), &new);
        assert!(
            fresh.find("new").unwrap() < fresh.find(soak).unwrap(),
            "{fresh}"
        );
        assert!(replace_section("# B\n", &new).ends_with(&format!("{SECTION_END}\n")));
    }
}
