//! Benchmark of SSH host-key scanning (`host-key-checking`): how long one node's scan takes
//! (three key exchanges: Ed25519, ECDSA, RSA) against a real SSH server on loopback, one at a
//! time and 50 at once (a burst of nodes turning ACTIVE together). Run with
//! `cargo bench --bench keyscan`; needs `ssh-keygen`. Prints figures; no target: a scan is a
//! few key exchanges, small next to a server's boot.

#[path = "../tests/common/ssh.rs"]
mod ssh;

use std::time::{Duration, Instant};

const SEQUENTIAL: usize = 30;
const CONCURRENT: usize = 50;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(dir.path(), &["ed25519", "ecdsa", "rsa"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    ssh::serve(listener, &keys);
    let timeout = Duration::from_secs(10);

    let mut times = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        let found = nodepool::keyscan::scan(addr, timeout).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(found, keys.public);
    }
    times.sort();
    println!(
        "keyscan, one node at a time ({SEQUENTIAL} scans, 3 key types each): median {:.1} ms, max {:.1} ms",
        times[SEQUENTIAL / 2].as_secs_f64() * 1e3,
        times[SEQUENTIAL - 1].as_secs_f64() * 1e3
    );

    let t = Instant::now();
    let scans: Vec<_> = (0..CONCURRENT)
        .map(|_| tokio::spawn(nodepool::keyscan::scan(addr, timeout)))
        .collect();
    for s in scans {
        assert_eq!(s.await.unwrap().unwrap(), keys.public);
    }
    let all = t.elapsed();
    println!(
        "keyscan, {CONCURRENT} nodes at once: {:.0} ms in all, {:.1} scans/s (client and server share this machine's cores)",
        all.as_secs_f64() * 1e3,
        CONCURRENT as f64 / all.as_secs_f64()
    );
}
