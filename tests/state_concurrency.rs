//! Several processes against one state database: concurrent writers lose nothing and corrupt
//! nothing, and the writer lease survives a SIGKILLed holder only until it expires.
//!
//! The child processes are this test binary re-executed to run [`child`] (an ignored test)
//! with `NODEPOOL_STATE_CHILD` saying what to do.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodepool::state::{NewNode, NodeState, StateError, Store};

const ROLE: &str = "NODEPOOL_STATE_CHILD";
const DB: &str = "NODEPOOL_STATE_DB";
const TAG: &str = "NODEPOOL_STATE_TAG";
const PER_CHILD: usize = 500;
const LEASE_TTL: Duration = Duration::from_secs(2);

/// The child side. Does nothing unless started by one of the tests below.
#[test]
#[ignore = "helper: run as a child process by the other tests in this file"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let db = std::env::var(DB).expect("NODEPOOL_STATE_DB");
    let tag = std::env::var(TAG).expect("NODEPOOL_STATE_TAG");
    match role.as_str() {
        // PER_CHILD nodes, one transaction each, half of them moved on to building.
        "insert" => {
            let mut store = Store::open(&db).unwrap();
            for i in 0..PER_CHILD {
                let mut new = NewNode::new(&tag, "main", format!("label-{}", i % 7));
                new.details.comment = Some(format!("{tag}-{i}"));
                let node = store.insert_node(&new).unwrap();
                if i % 2 == 0 {
                    store.set_node_state(&node.id, NodeState::Building).unwrap();
                }
            }
        }
        // Take the lease, say so, and hang until killed.
        "hold-lease" => {
            let store = Store::open(&db).unwrap();
            let holder = format!("{tag} pid {}", std::process::id());
            let _lease = store.acquire_lease(&holder, LEASE_TTL).unwrap();
            println!("LEASED");
            std::thread::sleep(Duration::from_secs(120));
            unreachable!("the parent kills this process");
        }
        other => panic!("unknown child role {other}"),
    }
}

fn spawn(role: &str, db: &Path, tag: &str, stdout: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DB, db)
        .env(TAG, tag)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills the child if the test fails before it does (so no process outlives the test).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn concurrent_writers_lose_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // The children race to create and migrate the file too.
    let tags = ["writer-a", "writer-b", "writer-c"];
    let children: Vec<Child> = tags
        .iter()
        .map(|t| spawn("insert", &db, t, Stdio::null()))
        .collect();
    // The parent writes at the same time.
    let mut store = Store::open(&db).expect("parent opens while the children migrate");
    for i in 0..100 {
        let mut new = NewNode::new("parent", "main", "label");
        new.details.comment = Some(format!("parent-{i}"));
        store.insert_node(&new).unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer child failed");
    }

    let r = store.read();
    let all = r.nodes().unwrap();
    assert_eq!(all.len(), tags.len() * PER_CHILD + 100);
    // Ids are unique and dense: no sequence value was handed out twice or lost.
    let ids: BTreeSet<String> = all.iter().map(|n| n.id.clone()).collect();
    let expected: BTreeSet<String> = (1..=all.len()).map(|i| format!("{i:010}")).collect();
    assert_eq!(ids, expected);
    for tag in tags {
        let mine = r.nodes_of_provider(tag).unwrap();
        assert_eq!(mine.len(), PER_CHILD, "{tag}");
        let comments: BTreeSet<String> = mine
            .iter()
            .map(|n| n.details.comment.clone().unwrap())
            .collect();
        assert_eq!(comments.len(), PER_CHILD, "{tag}: every row present once");
        let building = mine
            .iter()
            .filter(|n| n.state == NodeState::Building)
            .count();
        assert_eq!(building, PER_CHILD / 2, "{tag}");
    }
    // Every write transaction bumped the serial exactly once.
    let writes = tags.len() * (PER_CHILD + PER_CHILD / 2) + 100;
    assert_eq!(r.stamp().unwrap().serial, writes as i64);
    assert_eq!(store.integrity_check().unwrap(), Vec::<String>::new());
}

#[test]
fn lease_of_a_killed_holder_expires_and_a_live_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    drop(Store::open(&db).unwrap());
    let mut child = KillOnDrop(spawn("hold-lease", &db, "apply", Stdio::piped()));
    let pid = child.0.id();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("child exited before taking the lease")
            .unwrap();
        // libtest may have printed "test child ... " on the same line.
        if line.trim_end().ends_with("LEASED") {
            break;
        }
    }

    // While the holder lives, a second writer is refused with the holder named.
    let store = Store::open(&db).unwrap();
    let err = store
        .acquire_lease("apply pid parent", LEASE_TTL)
        .unwrap_err();
    match &err {
        StateError::LeaseHeld {
            holder,
            since,
            expires_at,
        } => {
            assert_eq!(holder, &format!("apply pid {pid}"));
            assert!(expires_at > since);
        }
        other => panic!("expected LeaseHeld, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("held by apply pid {pid} since"))
    );

    // SIGKILL: no destructor runs, the lease row stays behind...
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed_at = Instant::now();
    // ...and the next writer gets it once it lapses (within ttl + 1 s of rounding).
    let lease = store
        .acquire_lease_waiting("apply pid parent", LEASE_TTL, Duration::from_secs(20))
        .unwrap();
    assert_eq!(lease.holder(), "apply pid parent");
    assert!(killed_at.elapsed() <= LEASE_TTL + Duration::from_secs(5));
}
