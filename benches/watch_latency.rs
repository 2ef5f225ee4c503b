//! Benchmark: time from `git commit` in a watched local repository to the trigger (median of 20), against the poll interval.
//!
//! Run: `cargo bench --bench watch_latency`. Target (issue 7): well under 1 s, versus an
//! average of half the poll interval (30 s with the default 60 s) without the watcher.
//! Each sample starts just before `git commit` is spawned and ends when the debounced
//! [`Trigger`] arrives, so it includes git's own run time and the debounce quiet period.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nodepool::watch::trigger::DEFAULT_POLL_INTERVAL;
use nodepool::watch::{Debounce, RefWatcher, Trigger};
use tokio::sync::mpsc;

const SAMPLES: usize = 20;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

struct Figures {
    commit: Vec<Duration>,
    trigger: Vec<Duration>,
}

async fn measure(debounce: Debounce) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main", "."]);
    std::fs::write(dir.join("nodepool.yaml"), "labels: []\n").unwrap();
    git(dir, &["add", "nodepool.yaml"]);
    git(dir, &["commit", "-q", "-m", "initial"]);

    let (tx, mut rx) = mpsc::channel(16);
    let _watcher = RefWatcher::start(dir, Some(Path::new("nodepool.yaml")), tx, debounce).unwrap();
    let mut figures = Figures {
        commit: Vec::new(),
        trigger: Vec::new(),
    };
    for i in 0..SAMPLES {
        let start = Instant::now();
        git(
            dir,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("sample {i}"),
            ],
        );
        figures.commit.push(start.elapsed());
        let trigger = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a trigger within 10 s")
            .expect("watcher alive");
        figures.trigger.push(start.elapsed());
        assert!(matches!(trigger, Trigger::RepoChanged { .. }));
        // Let the repository settle so samples do not share a debounce window.
        while let Ok(Some(_)) = tokio::time::timeout(debounce.quiet * 2, rx.recv()).await {}
    }
    figures
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "median {}, min {}, p90 {}, max {}",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    )
}

#[tokio::main]
async fn main() {
    println!(
        "watch_latency: `git commit` in a watched local repo → debounced trigger ({SAMPLES} samples each)"
    );
    for (name, debounce) in [
        (
            "default debounce (150 ms quiet, 1 s max)",
            Debounce::default(),
        ),
        (
            "short debounce (50 ms quiet, 1 s max)",
            Debounce {
                quiet: Duration::from_millis(50),
                max_delay: Duration::from_secs(1),
            },
        ),
    ] {
        let figures = measure(debounce).await;
        println!("  {name}:");
        println!("    git commit itself:      {}", summary(figures.commit));
        println!("    commit start → trigger: {}", summary(figures.trigger));
    }
    let poll = DEFAULT_POLL_INTERVAL;
    println!(
        "  poll interval alone ({} s): mean {} s, worst {} s after a commit",
        poll.as_secs(),
        poll.as_secs() / 2,
        poll.as_secs()
    );
}
