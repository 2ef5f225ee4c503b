//! Benchmark of the state store at scale: inserts 100,000 nodes and 10,000 uploads into a
//! database file, then prints the median time of the queries the planner runs every pass.
//! Target: < 20 ms each. Run with `cargo bench --bench state`. Figures are wall-clock medians;
//! the calibration line (pure string formatting, no database) tells how fast the machine was.

use std::time::{Duration, Instant};

use nodepool::state::{NewNode, NewUpload, NodeState, Store, UploadState};

const NODES: usize = 100_000;
const UPLOADS: usize = 10_000;
const PROVIDERS: usize = 10;
const LABELS: usize = 40;
const IMAGES: usize = 20;
const RUNS: usize = 15;
const TARGET: Duration = Duration::from_millis(20);

struct Figure {
    wall_median: Duration,
    rows: usize,
}

fn median(mut f: impl FnMut() -> usize) -> Figure {
    let mut walls = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        rows = std::hint::black_box(f());
        walls.push(t.elapsed());
    }
    walls.sort();
    Figure {
        wall_median: walls[RUNS / 2],
        rows,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).expect("open");

    // A realistic mix: most nodes in use, a ready buffer, some building/used/deleting.
    let t = Instant::now();
    store
        .write(|w| {
            for i in 0..NODES {
                let mut new = NewNode::new(
                    format!("provider-{}", i % PROVIDERS),
                    "main",
                    format!("label-{}", (i / PROVIDERS) % LABELS),
                );
                new.state = NodeState::Building;
                new.details.server_id = Some(format!("{i:08x}-0000-4000-8000-000000000000"));
                new.details.public_ipv4 =
                    Some(format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255));
                new.details.host_keys = vec![format!("ssh-ed25519 AAAAC3Nz{i}")];
                new.details.flavor = Some("m1.large".into());
                new.details.cores = Some(8);
                new.details.ram = Some(8192);
                let id = w.insert_node(&new)?.id;
                let path: &[NodeState] = match i % 10 {
                    0..=5 => &[NodeState::Ready, NodeState::InUse],
                    6 | 7 => &[NodeState::Ready],
                    8 => &[],
                    _ => &[
                        NodeState::Ready,
                        NodeState::InUse,
                        NodeState::Used,
                        NodeState::Deleting,
                    ],
                };
                for s in path {
                    w.set_node_state(&id, *s)?;
                }
            }
            Ok(())
        })
        .expect("insert nodes");
    let insert_nodes = t.elapsed();

    let t = Instant::now();
    store
        .write(|w| {
            for i in 0..UPLOADS {
                let u = w.insert_upload(&NewUpload {
                    build_id: None,
                    image_name: format!("image-{}", i % IMAGES),
                    provider: format!("provider-{}", (i / IMAGES) % PROVIDERS),
                    format: Some("qcow2".into()),
                    external_name: format!("image-{}-{i}", i % IMAGES),
                })?;
                w.update_upload(&u.id, |d| {
                    d.external_id = Some(format!("{i:08x}-image"));
                    d.attempts = 1;
                })?;
                w.set_upload_state(&u.id, UploadState::Ready)?;
            }
            Ok(())
        })
        .expect("insert uploads");
    let insert_uploads = t.elapsed();

    println!(
        "state store benchmark: {NODES} nodes ({PROVIDERS} providers, {LABELS} labels), {UPLOADS} uploads ({IMAGES} images); median of {RUNS} runs"
    );
    println!(
        "  insert {NODES} nodes (+ state changes), one transaction: {:8.1} ms",
        ms(insert_nodes)
    );
    println!(
        "  insert {UPLOADS} uploads (+ update, state), one transaction: {:8.1} ms",
        ms(insert_uploads)
    );

    // Machine calibration: the same work on any machine, to compare figures across machines.
    let calibration = median(|| {
        let v: Vec<String> = (0..80_000).map(|i| format!("np{i:010}")).collect();
        v.len()
    });
    println!(
        "  calibration: format 80,000 short strings: {:.3} ms wall",
        ms(calibration.wall_median)
    );

    let r = store.read();
    let figures = [
        (
            "all nodes of a provider (NodeSummary)",
            median(|| r.node_summaries_of_provider("provider-3").unwrap().len()),
        ),
        (
            "all nodes of a provider (full Node rows)",
            median(|| r.nodes_of_provider("provider-3").unwrap().len()),
        ),
        (
            "ready nodes of a label",
            median(|| r.ready_nodes("label-17").unwrap().len()),
        ),
        (
            "info: ready nodes of all 40 labels",
            median(|| {
                (0..LABELS)
                    .map(|l| r.ready_nodes(&format!("label-{l}")).unwrap().len())
                    .sum()
            }),
        ),
        (
            "ready counts by label",
            median(|| r.ready_counts_by_label().unwrap().len()),
        ),
        (
            "node counts by state",
            median(|| r.node_counts_by_state().unwrap().len()),
        ),
        (
            "info: node counts by provider, label, state (gauges)",
            median(|| r.node_counts().unwrap().len()),
        ),
        (
            "uploads of an image to a provider",
            median(|| r.uploads_for("image-7", "provider-3").unwrap().len()),
        ),
        (
            "uploads of a provider",
            median(|| r.uploads_of_provider("provider-3").unwrap().len()),
        ),
        (
            "one node by id",
            median(|| r.node("0000054321").unwrap().map_or(0, |_| 1)),
        ),
        (
            "info: all nodes (nodepool list)",
            median(|| r.nodes().unwrap().len()),
        ),
    ];
    let mut over = 0;
    for (name, f) in figures {
        let planner = !name.starts_with("info:");
        let flag = if planner && f.wall_median > TARGET {
            over += 1;
            "  OVER TARGET"
        } else {
            ""
        };
        println!(
            "  {name:<42} {:>9.3} ms  ({} rows){flag}",
            ms(f.wall_median),
            f.rows
        );
    }
    println!(
        "  planner queries over the {} ms target: {over} (compare the calibration line across machines)",
        TARGET.as_millis()
    );

    // `nodepool backup` of this database (a consistent copy while it is open).
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let t = Instant::now();
    let copy = dir.path().join("backup.db");
    let summary = nodepool::state::backup(&path, &copy).expect("backup");
    println!(
        "  backup (VACUUM INTO) of the {:.1} MB database: {:8.1} ms ({} nodes, {} uploads in the copy)",
        size as f64 / 1e6,
        ms(t.elapsed()),
        summary.nodes,
        summary.uploads
    );
}
