//! Benchmark: load and validate a large generated config (50 providers, 500 labels, 100
//! diskimages) and print the time. Target: < 50 ms in release mode.
//! Run: `cargo bench --bench config_load`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn generate(providers: usize, labels: usize, images: usize) -> String {
    let mut y = String::from("labels:\n");
    for l in 0..labels {
        writeln!(y, "  - name: label-{l}\n    min-ready: {}", l % 3).unwrap();
    }
    y.push_str("diskimages:\n  - name: base\n    abstract: true\n    elements: [vm, simple-init]\n    env-vars: {A: '1'}\n");
    for i in 0..images {
        writeln!(y, "  - name: image-{i}\n    parent: base\n    elements: [ubuntu-minimal]\n    release: jammy").unwrap();
    }
    y.push_str("providers:\n");
    for p in 0..providers {
        writeln!(
            y,
            "  - name: provider-{p}\n    cloud: cloud-{p}\n    rate: 0.5\n    diskimages:"
        )
        .unwrap();
        for i in 0..images {
            writeln!(y, "      - name: image-{i}").unwrap();
        }
        y.push_str("    pools:\n      - name: main\n        max-servers: 100\n        labels:\n");
        // Every label is offered somewhere: spread the labels over the providers.
        for l in (p..labels).step_by(providers) {
            writeln!(
                y,
                "          - name: label-{l}\n            diskimage: image-{}\n            min-ram: 2048",
                l % images
            )
            .unwrap();
        }
    }
    y
}

fn main() {
    let text = generate(50, 500, 100);
    let env = BTreeMap::new();
    let path = Path::new("large.yaml");
    // Warm up (schema compilation happens once per process).
    nodepool::config::load_str(path, &text, None, &env).expect("the generated config is valid");
    let mut times: Vec<Duration> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let (c, _) = nodepool::config::load_str(path, &text, None, &env).unwrap();
            assert_eq!(c.providers.len(), 50);
            t.elapsed()
        })
        .collect();
    times.sort();
    let t = Instant::now();
    let _ = nodepool::config::schema::generate();
    let gen_time = t.elapsed();
    println!(
        "config_load: {} KiB, 50 providers, 500 labels, 100 diskimages: median {:.2} ms, min {:.2} ms, max {:.2} ms (target < 50 ms); schema generation {:.2} ms",
        text.len() / 1024,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        gen_time.as_secs_f64() * 1e3,
    );
}
