//! Host-key scanning against a real SSH server: the keys found are the server's (as its
//! `ssh-keygen` `.pub` files and OpenSSH's own `ssh-keyscan` see them), and a server whose SSH
//! comes up late is waited for.

#[path = "common/ssh.rs"]
mod ssh;

use nodepool::keyscan;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_host_key_as_ssh_keyscan_does() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(dir.path(), &["ed25519", "ecdsa", "rsa"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    ssh::serve(listener, &keys);

    let found = keyscan::scan(addr, Duration::from_secs(10)).await.unwrap();
    assert_eq!(found, keys.public, "the server's own public keys");

    // An independent client: OpenSSH's ssh-keyscan sees the same keys.
    let out = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "10", "-t", "ed25519,ecdsa,rsa", "-p"])
        .arg(addr.port().to_string())
        .arg("127.0.0.1")
        .output()
        .await
        .expect("ssh-keyscan runs (openssh-client)");
    let mut theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    theirs.sort();
    assert_eq!(
        theirs,
        found,
        "ssh-keyscan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_one_key_type_gives_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(dir.path(), &["ecdsa"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    ssh::serve(listener, &keys);
    let found = keyscan::scan(addr, Duration::from_secs(10)).await.unwrap();
    assert_eq!(found, keys.public);
    assert!(found[0].starts_with("ecdsa-sha2-nistp256 "), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_ssh_that_comes_up_late() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(dir.path(), &["ed25519"]);
    // Reserve a port, free it, and only serve on it after a while (a node still booting).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        ssh::serve(listener, &keys);
        keys.public
    });
    let found =
        keyscan::wait_for_host_keys(addr, Duration::from_secs(20), Duration::from_millis(200))
            .await
            .unwrap();
    assert_eq!(found, late.await.unwrap());
}
