//! Golden plans: each directory under `tests/golden/` holds a case — the config (its own
//! `nodepool.yaml`, or the shared `tests/golden/nodepool.yaml`), the observed world as data
//! (`world.yaml`, with a fixed clock) — and the expected `plan.txt` and `plan.json`, compared
//! byte for byte. A case with an `erase` file (naming a provider) holds the plan of
//! `nodepool erase` for that provider instead.
//!
//! To regenerate the expected files after an intended change, run the explicit overwrite
//! command and review the diff:
//!
//!     BLESS_GOLDEN=1 cargo test --test golden

use nodepool::config::{self, LoadOptions};
use nodepool::reconcile::render::{self, PlanDocument};
use nodepool::reconcile::{World, plan};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load_world(path: &Path) -> World {
    let text = std::fs::read_to_string(path).unwrap();
    let (value, _) =
        config::yaml::parse(&text).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.message));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run one case; returns a description of any mismatch.
fn run_case(dir: &Path, bless: bool) -> Option<String> {
    let cfg_path = if dir.join("nodepool.yaml").exists() {
        dir.join("nodepool.yaml")
    } else {
        golden_dir().join("nodepool.yaml")
    };
    let loaded = config::load(&LoadOptions {
        config: cfg_path,
        secure: None,
        env: Default::default(),
    })
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let world = load_world(&dir.join("world.yaml"));
    // A case with an `erase` file holds the `nodepool erase PROVIDER` plan instead.
    let p = match std::fs::read_to_string(dir.join("erase")) {
        Ok(provider) => nodepool::ops::nodes::erase_plan(&world, provider.trim()).unwrap(),
        Err(_) => plan(&loaded.config, &world),
    };
    let text = render::text(&p, None);
    let doc = PlanDocument::new(p, "golden", "golden", 0, world.now);
    let json = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let mut problems = Vec::new();
    for (file, actual) in [("plan.txt", &text), ("plan.json", &json)] {
        let path = dir.join(file);
        if bless {
            std::fs::write(&path, actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if &expected != actual {
            let diff = similar::TextDiff::from_lines(&expected, actual)
                .unified_diff()
                .header("expected", "actual")
                .to_string();
            problems.push(format!("{}:\n{diff}", path.display()));
        }
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

#[test]
fn golden_plans() {
    let bless = std::env::var_os("BLESS_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("world.yaml").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected at least 20 golden cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c, bless)).collect();
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (run `BLESS_GOLDEN=1 cargo test --test golden` if the change is intended):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same inputs always give the same plan.
#[test]
fn plans_are_deterministic() {
    let dir = golden_dir().join("leaks-mixed");
    let cfg = config::load(&LoadOptions {
        config: golden_dir().join("nodepool.yaml"),
        secure: None,
        env: Default::default(),
    })
    .unwrap();
    let world = load_world(&dir.join("world.yaml"));
    let a = plan(&cfg.config, &world);
    for _ in 0..10 {
        assert_eq!(plan(&cfg.config, &world), a);
    }
}
