//! The writer lease: at most one `apply` mutates the clouds at a time.
//!
//! A single row (`lease`) names the holder, when it was acquired and when it lapses. A
//! holder renews it well before expiry; a process killed with the lease held simply stops
//! renewing, and once `expires_at` has passed the next writer takes it over. The guard
//! carries a random token so that a holder whose lease lapsed and was taken cannot renew,
//! release or write under it by mistake.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::age::{now_unix, now_unix_ms};
use super::{StateError, WriteTx};

/// A held writer lease. Dropping it releases the lease (if still ours). It owns its own
/// connection, so the [`super::Store`] stays free for writes while it is held.
pub struct LeaseGuard {
    conn: Connection,
    token: String,
    holder: String,
    ttl: Duration,
    acquired_at: i64,
    expires_at: i64,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("holder", &self.holder)
            .field("acquired_at", &self.acquired_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The expiry of a lease taken now for `ttl`, in unix seconds, rounded *up* so a lease never
/// lapses before `ttl` has really passed (at most one second later).
fn expiry(ttl: Duration) -> i64 {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    (now_unix_ms().saturating_add(ttl_ms) + 999).div_euclid(1000)
}

/// One attempt: takes the lease if it is free, expired, or was released. Returns the new
/// token, acquisition and expiry times.
fn try_take(
    conn: &mut Connection,
    holder: &str,
    ttl: Duration,
) -> Result<(String, i64, i64), StateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_unix();
    let current: Option<(String, i64, i64)> = tx
        .query_row(
            "SELECT holder, acquired_at, expires_at FROM lease WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((holder, since, expires_at)) = current
        && expires_at > now
    {
        return Err(StateError::LeaseHeld {
            holder,
            since,
            expires_at,
        });
    }
    let token = uuid::Uuid::new_v4().to_string();
    let expires_at = expiry(ttl);
    tx.execute("DELETE FROM lease WHERE id = 1", [])?;
    tx.execute(
        "INSERT INTO lease (id, holder, token, acquired_at, expires_at) VALUES (1, ?1, ?2, ?3, ?4)",
        params![holder, token, now, expires_at],
    )?;
    tx.commit()?;
    Ok((token, now, expires_at))
}

impl LeaseGuard {
    /// Takes the lease on `conn` (a connection of its own), retrying while it is held until
    /// `deadline` (`None`: a single attempt). On refusal the last [`StateError::LeaseHeld`]
    /// names the holder.
    pub(super) fn acquire(
        mut conn: Connection,
        holder: &str,
        ttl: Duration,
        deadline: Option<Instant>,
    ) -> Result<LeaseGuard, StateError> {
        const POLL: Duration = Duration::from_millis(100);
        let (token, acquired_at, expires_at) = loop {
            match try_take(&mut conn, holder, ttl) {
                Err(StateError::LeaseHeld { .. })
                    if deadline.is_some_and(|d| Instant::now() + POLL < d) =>
                {
                    std::thread::sleep(POLL);
                }
                other => break other?,
            }
        };
        Ok(LeaseGuard {
            conn,
            token,
            holder: holder.to_owned(),
            ttl,
            acquired_at,
            expires_at,
        })
    }

    /// Who holds it (as given to `acquire_lease`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Unix seconds when it was acquired.
    pub fn acquired_at(&self) -> i64 {
        self.acquired_at
    }

    /// Unix seconds when it lapses unless renewed.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Extends the lease by its ttl from now. Fails with [`StateError::LeaseLost`] if it
    /// lapsed and someone else took it (the caller must stop mutating the clouds).
    pub fn renew(&mut self) -> Result<(), StateError> {
        let expires_at = expiry(self.ttl);
        let n = self.conn.execute(
            "UPDATE lease SET expires_at = ?2 WHERE id = 1 AND token = ?1",
            params![self.token, expires_at],
        )?;
        if n == 0 {
            return Err(self.lost());
        }
        self.expires_at = expires_at;
        Ok(())
    }

    /// Checks, inside the caller's transaction, that this lease is still the current one.
    /// A lapsed lease that nobody took over is still ours (the row and token are unchanged).
    pub(super) fn verify_in(&self, conn: &Connection) -> Result<(), StateError> {
        let token: Option<String> = conn
            .query_row("SELECT token FROM lease WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        if token.as_deref() == Some(self.token.as_str()) {
            Ok(())
        } else {
            Err(self.lost())
        }
    }

    /// Releases the lease now (also done on drop); reports whether it was still ours.
    pub fn release(self) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "DELETE FROM lease WHERE id = 1 AND token = ?1",
            params![self.token],
        )?;
        Ok(n == 1)
        // Drop runs next and deletes nothing more.
    }

    fn lost(&self) -> StateError {
        StateError::LeaseLost {
            holder: self.holder.clone(),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Best effort: if this fails the lease simply expires after its ttl.
        let _ = self.conn.execute(
            "DELETE FROM lease WHERE id = 1 AND token = ?1",
            params![self.token],
        );
    }
}

impl WriteTx<'_> {
    /// Breaks the current lease if it is still the one `holder` took at `since` (so a lease
    /// that changed hands meanwhile is never broken). For a holder known to be dead.
    pub fn break_lease(&self, holder: &str, since: i64) -> Result<bool, StateError> {
        let n = self.tx.execute(
            "DELETE FROM lease WHERE id = 1 AND holder = ?1 AND acquired_at = ?2",
            params![holder, since],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewNode, Store};
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    /// Makes the current lease look lapsed, as if its holder stopped renewing long ago.
    fn lapse(store: &Store) {
        store
            .conn
            .execute("UPDATE lease SET expires_at = ?1", params![now_unix() - 1])
            .unwrap();
    }

    #[test]
    fn second_writer_is_refused_with_the_holder_named() {
        let store = Store::open_in_memory().unwrap();
        let first = store
            .acquire_lease("apply pid 1234 on host h", TTL)
            .unwrap();
        assert_eq!(first.holder(), "apply pid 1234 on host h");
        assert!(first.expires_at() >= first.acquired_at() + 30);
        let err = store
            .acquire_lease("apply pid 99 on host k", TTL)
            .unwrap_err();
        match &err {
            StateError::LeaseHeld { holder, since, .. } => {
                assert_eq!(holder, "apply pid 1234 on host h");
                assert_eq!(*since, first.acquired_at());
            }
            other => panic!("unexpected {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("held by apply pid 1234 on host h since "),
            "{text}"
        );
        assert!(text.contains("ago)"), "{text}");
    }

    #[test]
    fn drop_releases_and_waiting_acquire_gets_it() {
        let store = Store::open_in_memory().unwrap();
        let first = store.acquire_lease("a", TTL).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let started = Instant::now();
        let second = store
            .acquire_lease_waiting("b", TTL, Duration::from_secs(20))
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(second.holder(), "b");
        releaser.join().unwrap();
        assert!(second.release().unwrap());
        store.acquire_lease("c", TTL).unwrap();
    }

    #[test]
    fn waiting_gives_up_at_the_deadline() {
        let store = Store::open_in_memory().unwrap();
        let _held = store.acquire_lease("a", TTL).unwrap();
        let started = Instant::now();
        let err = store
            .acquire_lease_waiting("b", TTL, Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, StateError::LeaseHeld { ref holder, .. } if holder == "a"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn lapsed_lease_is_taken_over_and_the_old_holder_is_fenced() {
        let mut store = Store::open_in_memory().unwrap();
        let mut old = store.acquire_lease("old", TTL).unwrap();
        // Renewing an unexpired lease works and moves nothing else.
        old.renew().unwrap();
        store
            .write_under_lease(&old, |w| w.insert_node(&NewNode::new("p", "main", "l")))
            .unwrap();
        // A lapsed lease nobody took is still ours.
        lapse(&store);
        old.renew().unwrap();
        lapse(&store);
        let new = store.acquire_lease("new", TTL).unwrap();
        assert!(matches!(old.renew(), Err(StateError::LeaseLost { .. })));
        let fenced =
            store.write_under_lease(&old, |w| w.insert_node(&NewNode::new("p", "main", "l")));
        assert!(matches!(fenced, Err(StateError::LeaseLost { .. })));
        assert_eq!(
            store.read().nodes().unwrap().len(),
            1,
            "the fenced write was rolled back"
        );
        // The old guard's release/drop must not free the new holder's lease.
        assert!(!old.release().unwrap());
        assert!(matches!(
            store.acquire_lease("third", TTL),
            Err(StateError::LeaseHeld { ref holder, .. }) if holder == "new"
        ));
        store
            .write_under_lease(&new, |w| w.insert_node(&NewNode::new("p", "main", "l")))
            .unwrap();
    }

    #[test]
    fn expiry_rounds_up() {
        let before = now_unix_ms();
        let e = expiry(Duration::from_millis(1500));
        assert!(e * 1000 >= before + 1500);
        assert!(e * 1000 <= now_unix_ms() + 1500 + 1000);
    }
}
