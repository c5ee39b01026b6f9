//! The feed parser and validator, case by case: each folder of `tests/feeds/` holds one
//! feed file named after its kind (`stock.csv`, `catalog.ndjson`, ...) and
//! `expected.json`, what checking it finds (rows, and every bad row's line, field and
//! rule). The known SKUs and warehouses are the demo seed's. Run with OMS_BLESS=1 to
//! rewrite the expected files after a deliberate change (then read the diff).

use activities::feeds::{check, Format, Kind, Known, Progress};
use serde_json::{json, Value};
use std::path::Path;

fn known() -> Known {
    let demo = activities::seed::demo();
    Known {
        skus: demo.skus.iter().map(|s| s.sku.clone()).collect(),
        warehouses: demo
            .warehouses
            .iter()
            .map(|w| w.warehouse_id.clone())
            .collect(),
    }
}

/// The feed file of a case folder: its kind and format from its name.
fn feed_of(dir: &Path) -> (std::path::PathBuf, Kind, Format) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(format) = Format::of_path(&name) else {
            continue;
        };
        let kind = Kind::parse(name.split('.').next().unwrap())
            .unwrap_or_else(|| panic!("{}: name the file after its kind", path.display()));
        return (path, kind, format);
    }
    panic!(
        "{}: no feed file (stock.csv, catalog.ndjson, ...)",
        dir.display()
    );
}

#[test]
fn feed_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/feeds");
    let bless = std::env::var_os("OMS_BLESS").is_some();
    let known = known();
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        cases += 1;
        let (path, kind, format) = feed_of(&dir);
        let file = std::fs::File::open(&path).unwrap();
        let checked = check(kind, format, file, &known, &Progress::default());
        let got = json!({
            "rows": checked.rows,
            "error_count": checked.error_count,
            "errors": checked.errors,
        });
        let expected_path = dir.join("expected.json");
        if bless {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let expected: Value = std::fs::read_to_string(&expected_path)
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != expected {
            failures.push(format!(
                "{}:\n  expected {expected}\n  got      {got}",
                dir.display()
            ));
        }
    }
    assert!(
        cases >= 10,
        "only {cases} cases found under {}",
        root.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
