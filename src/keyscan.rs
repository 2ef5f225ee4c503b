//! SSH host-key scanning of new nodes (`host-key-checking`): a node is ready only once its SSH
//! server answers, and its host keys go to Zuul with it.
//!
//! One SSH connection per key type (Ed25519, ECDSA P-256, RSA), each stopped right after the
//! key exchange has proved the server holds the key — nothing is authenticated or run. Keys come
//! back in OpenSSH's one-line form (`ssh-ed25519 AAAA…`), the form upstream Nodepool stores and
//! `ssh-keyscan` prints.

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Preferred, client};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why no host key could be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyscanError {
    /// Nothing accepted a connection (not booted yet, port closed, filtered).
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// A connection was made but no SSH key exchange completed.
    #[error("{addr} did not complete an SSH key exchange: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    /// Still nothing when the time was up (the last attempt's error).
    #[error("no SSH host key from {addr} within {seconds} s ({last})")]
    TimedOut {
        addr: SocketAddr,
        seconds: u64,
        last: String,
    },
}

/// The key types asked for, one connection each.
fn key_types() -> [Algorithm; 3] {
    [
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
    ]
}

/// Records the host key the server proved it holds, then declines to go on.
struct Capture(Arc<Mutex<Option<String>>>);

impl client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key
            && let Ok(line) = key.to_openssh()
        {
            // The wire form has no comment; keep "type base64" only.
            let line: Vec<&str> = line.split_whitespace().take(2).collect();
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(line.join(" "));
        }
        Ok(false)
    }
}

/// One key of one type, or why not.
async fn scan_type(
    addr: SocketAddr,
    algorithm: Algorithm,
    timeout: Duration,
) -> Result<Option<String>, KeyscanError> {
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(KeyscanError::Connect {
                addr,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(KeyscanError::Connect {
                addr,
                reason: format!("no answer within {:.1} s", timeout.as_secs_f64()),
            });
        }
    };
    // A handful of small packets each way: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let config = Arc::new(client::Config {
        preferred: Preferred {
            key: Cow::Owned(vec![algorithm]),
            ..Preferred::DEFAULT
        },
        inactivity_timeout: Some(timeout),
        ..client::Config::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let outcome = tokio::time::timeout(
        timeout,
        client::connect_stream(config, stream, Capture(Arc::clone(&seen))),
    )
    .await;
    let key = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (key, outcome) {
        (Some(k), _) => Ok(Some(k)),
        // The server has no key of this type: the algorithm negotiation failed.
        (None, Ok(Err(russh::Error::NoCommonAlgo { .. }))) => Ok(None),
        (None, Ok(Err(e))) => Err(KeyscanError::Handshake {
            addr,
            reason: e.to_string(),
        }),
        (None, Ok(Ok(_))) => Err(KeyscanError::Handshake {
            addr,
            reason: "the session opened without a host key".into(),
        }),
        (None, Err(_)) => Err(KeyscanError::Handshake {
            addr,
            reason: format!("no key exchange within {:.1} s", timeout.as_secs_f64()),
        }),
    }
}

/// The host keys of the SSH server at `addr`, one attempt: every key type it has, sorted.
pub async fn scan(addr: SocketAddr, timeout: Duration) -> Result<Vec<String>, KeyscanError> {
    let mut keys = Vec::new();
    for algorithm in key_types() {
        if let Some(k) = scan_type(addr, algorithm, timeout).await? {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        return Err(KeyscanError::Handshake {
            addr,
            reason: "the server offered none of ssh-ed25519, ecdsa-sha2-nistp256, rsa-sha2-512"
                .into(),
        });
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Scan `addr` until it answers or `within` has passed (a new server's SSH comes up some
/// seconds after the cloud calls it ACTIVE): an attempt every `interval`, each bounded by
/// what time is left (at most 10 s).
pub async fn wait_for_host_keys(
    addr: SocketAddr,
    within: Duration,
    interval: Duration,
) -> Result<Vec<String>, KeyscanError> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left
            .min(Duration::from_secs(10))
            .max(Duration::from_millis(100));
        let started = Instant::now();
        let last = match scan(addr, attempt).await {
            Ok(keys) => return Ok(keys),
            Err(e) => e,
        };
        let next = started + interval;
        if next >= deadline || Instant::now() >= deadline {
            return Err(KeyscanError::TimedOut {
                addr,
                seconds: within.as_secs(),
                last: last.to_string(),
            });
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_then_a_timeout() {
        // Bind and drop: the port is (very likely) closed now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = scan(addr, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, KeyscanError::Connect { .. }), "{err}");
        let started = Instant::now();
        let err = wait_for_host_keys(addr, Duration::from_millis(600), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, KeyscanError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_non_ssh_server_is_a_handshake_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let err = scan(addr, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, KeyscanError::Handshake { .. }), "{err}");
    }
}
