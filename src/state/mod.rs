//! The state store: the reconciler's memory of what it launched, built, uploaded, was asked for, and did.
//!
//! One SQLite file (WAL, busy timeout, foreign keys, file mode 0600), reached only through
//! [`Store`]. The SQL is kept portable (plain `TEXT`/`INTEGER` columns, ids from a
//! `sequences` table instead of `AUTOINCREMENT`, `ON CONFLICT` upserts only) so that a shared
//! database can replace SQLite when several launchers cooperate; only [`Store::open`] speaks
//! SQLite-specific `PRAGMA`s.
//!
//! # Schema (version [`SCHEMA_VERSION`], see `schema_v1.sql` and later `schema_vN.sql`)
//!
//! | table              | one row per                                   | key                          |
//! |--------------------|-----------------------------------------------|------------------------------|
//! | `nodes`            | node (server) we launched ([`Node`])          | `id` `"0000000001"`          |
//! | `node_requests`    | request for a set of labels ([`NodeRequest`]) | `id` `"0000000001"`          |
//! | `image_builds`     | disk-image build ([`ImageBuild`])             | `id` `"0000000001"`          |
//! | `image_uploads`    | upload of a build to a provider ([`ImageUpload`]) | `id` `"0000000001"`      |
//! | `image_pauses`     | image paused by an operator ([`ImagePause`])  | `image_name`                 |
//! | `config_revisions` | attempt to apply a config revision ([`ConfigRevision`]) | integer `id`       |
//! | `journal`          | planned cloud mutation ([`JournalEntry`])     | integer `id`, `(plan_id, seq)` |
//! | `leak_sightings`   | unowned cloud resource seen ([`LeakSighting`]) | `(provider, kind, external_id)` |
//! | `meta`             | the database: lineage UUID + serial ([`Stamp`]) | single row                 |
//! | `lease`            | the writer lease ([`LeaseGuard`])             | single row                   |
//! | `sequences`        | id sequence                                   | `name`                       |
//! | `schema_version`   | applied migration                             | `version`                    |
//!
//! All times are integer unix seconds (UTC); [`format_age`] renders ages for operators.
//! List-valued columns (labels, formats, host keys, assigned nodes) and journal payloads are
//! JSON text. States are stored as their lower-case names (`in-use`, `uploading`, ...).
//!
//! # Queries
//!
//! [`Reader`] holds every query; each ordered, index-backed (see the benchmark
//! `benches/state.rs`, target < 20 ms at 100,000 nodes):
//!
//! * planner: [`Reader::node_summaries_of_provider`] (covering index; the full rows are
//!   [`Reader::nodes_of_provider`]), [`Reader::ready_nodes`], [`Reader::ready_counts_by_label`],
//!   [`Reader::node_counts_by_state`], [`Reader::open_requests`] (priority order),
//!   [`Reader::uploads_for`] and [`Reader::builds_of_image`] (newest first), [`Reader::stamp`];
//! * crash recovery: [`Reader::unfinished_journal`], [`Reader::journal_of_plan`];
//! * operator commands: `list` [`Reader::nodes`], `image-list` [`Reader::uploads`],
//!   `dib-image-list` [`Reader::builds`], `request-list` [`Reader::requests`],
//!   `info PROVIDER` [`Reader::nodes_of_provider`] + [`Reader::uploads_of_provider`];
//!   every row type is `Serialize` for `--json`, with states as their names and times as
//!   unix seconds ([`age_since`] for the human column).
//!
//! # Node states
//!
//! Upstream's `building`, `ready`, `in-use`, `used`, `hold`, `deleting`, `failed`, plus
//! `init` for crash safety: the row exists before the create request is sent, so a crash in
//! between leaves a row (and a `pending` journal entry) to reconcile by hostname rather than
//! an unrecorded server. The transitions are tabled at [`NodeState`].
//!
//! # Invariants
//!
//! * **Every cloud mutation has a journal row in `pending` before the request is sent**
//!   ([`WriteTx::journal_insert`], committed before the call), is marked `running` when sent
//!   and `done`/`failed` when answered. After a crash, [`Reader::unfinished_journal`] lists
//!   exactly the mutations whose outcome is unknown and must be re-observed.
//! * **Node, request, build and upload states change only through the `set_*_state`
//!   methods**, which enforce the state machines ([`NodeState::can_transition_to`] and
//!   friends) inside the write transaction; the `update_*` methods cannot touch a state.
//!   A row is removed only from its `deleting` state (nodes, builds, uploads).
//! * **No secret is ever stored.** The API takes no credential type: only names, ids,
//!   addresses and texts the caller has already made printable (errors are produced by code
//!   that redacts [`crate::secret::Secret`]). A test greps the database file for a marker.
//! * **The serial moves with the state.** Every committed [`Store::write`] transaction that
//!   changed a row increments `meta.serial`; the lineage never changes. A saved plan stamped
//!   with an older serial or another lineage is stale.
//! * **One writer applies at a time.** `apply` holds the [`LeaseGuard`] (expiring, renewable);
//!   [`Store::write_under_lease`] checks the lease inside the transaction, so a writer whose
//!   lease lapsed and was taken over cannot commit. Short writes by other processes (e.g. an
//!   operator's `hold`) are serialised by SQLite's lock and the busy timeout.
//! * The database file (and its `-wal`/`-shm` companions, which SQLite creates with the same
//!   mode) is created `0600`; an existing file is tightened to `0600` on open.

mod age;
mod error;
mod image;
mod journal;
mod leak;
mod lease;
pub(crate) mod macros;
mod migrations;
mod node;
mod request;
mod revision;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};
use serde::Serialize;

pub use age::{age_since, describe_time, format_age, now_unix};
pub use error::{ParseStateError, StateError};
pub use image::{
    AdoptedUpload, BuildState, ImageBuild, ImagePause, ImageUpload, NewBuild, NewUpload,
    UploadDetails, UploadState,
};
pub use journal::{JournalEntry, JournalStatus, NewJournalEntry};
pub use leak::{LeakKind, LeakSighting};
pub use lease::LeaseGuard;
pub use migrations::{SCHEMA_VERSION, migration_sql};
pub use node::{NewNode, Node, NodeCount, NodeDetails, NodeState, NodeSummary, StateCount};
pub use request::{NewRequest, NodeRequest, RequestState};
pub use revision::{ConfigRevision, ConfigStatus, NewConfigRevision};

/// How long a statement waits for another process's write lock before failing `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the database lives; a lease needs to open a second connection to the same place.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    /// A shared-cache in-memory database, named uniquely per store.
    Memory(String),
}

/// The state store: one connection to the database plus the knowledge to open more
/// (for a [`LeaseGuard`]). Reads go through [`Store::read`], writes through [`Store::write`].
pub struct Store {
    conn: Connection,
    target: Target,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .finish()
    }
}

/// The lineage and serial of a database: what a saved plan is stamped with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stamp {
    pub lineage: String,
    pub serial: i64,
}

impl Store {
    /// Opens (creating if needed) the database at `path`: the file is created with mode 0600
    /// before SQLite touches it (an existing one is tightened to 0600), then WAL, the busy
    /// timeout and foreign keys are set and the schema is migrated to [`SCHEMA_VERSION`].
    /// A database of a newer schema is refused with [`StateError::SchemaTooNew`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StateError> {
        let path = path.as_ref().to_owned();
        prepare_file(&path)?;
        let target = Target::File(path.clone());
        let mut conn = connect(&target)?;
        set_wal(&conn).map_err(|source| StateError::Open {
            path: path.clone(),
            source,
        })?;
        migrations::migrate(&mut conn, &path, SCHEMA_VERSION)?;
        Ok(Store { conn, target })
    }

    /// A fresh private in-memory database (for tests and dry runs). Leases work on it too.
    pub fn open_in_memory() -> Result<Store, StateError> {
        let uri = format!(
            "file:nodepool-state-{}?mode=memory&cache=shared",
            uuid::Uuid::new_v4().simple()
        );
        let target = Target::Memory(uri);
        let mut conn = connect(&target)?;
        migrations::migrate(&mut conn, Path::new(":memory:"), SCHEMA_VERSION)?;
        Ok(Store { conn, target })
    }

    /// The database file (`None` for an in-memory store).
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(p) => Some(p),
            Target::Memory(_) => None,
        }
    }

    /// Read access. Each query is atomic; use [`Store::snapshot`] for several consistent ones.
    pub fn read(&self) -> Reader<'_> {
        Reader { conn: &self.conn }
    }

    /// A read transaction: every query through it sees the same committed state (e.g. the
    /// planner's nodes, uploads and [`Stamp`] together).
    pub fn snapshot(&mut self) -> Result<Snapshot<'_>, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)?;
        // A deferred transaction takes its read snapshot at the first read; take it now.
        tx.query_row("SELECT serial FROM meta WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(Snapshot { tx })
    }

    /// Runs `f` in one write transaction (taken immediately, so it waits at most
    /// [`BUSY_TIMEOUT`] for other writers and never deadlocks on lock upgrade). Commits if `f`
    /// returns `Ok`, rolls back otherwise; bumps the serial if any row changed.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = tx.total_changes();
        let w = WriteTx { tx };
        let out = f(&w)?;
        w.commit(before)?;
        Ok(out)
    }

    /// Like [`Store::write`], but first verifies inside the transaction that `lease` is still
    /// the current lease (fencing): fails with [`StateError::LeaseLost`] otherwise.
    pub fn write_under_lease<T>(
        &mut self,
        lease: &LeaseGuard,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.write(|w| {
            lease.verify_in(&w.tx)?;
            f(w)
        })
    }

    /// Inserts a node (see [`WriteTx::insert_node`]) in its own transaction.
    pub fn insert_node(&mut self, node: &NewNode) -> Result<Node, StateError> {
        self.write(|w| w.insert_node(node))
    }

    /// Moves a node to `to` if [`NodeState::can_transition_to`] allows it (own transaction).
    pub fn set_node_state(&mut self, id: &str, to: NodeState) -> Result<Node, StateError> {
        self.write(|w| w.set_node_state(id, to))
    }

    /// Takes the writer lease for `ttl` (see [`LeaseGuard`]); refused with
    /// [`StateError::LeaseHeld`] naming the holder if someone else holds an unexpired one.
    pub fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<LeaseGuard, StateError> {
        LeaseGuard::acquire(connect(&self.target)?, holder, ttl, None)
    }

    /// Like [`Store::acquire_lease`], but waits up to `wait` for the current holder to release
    /// it or for it to expire, polling.
    pub fn acquire_lease_waiting(
        &self,
        holder: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LeaseGuard, StateError> {
        let deadline = Instant::now() + wait;
        LeaseGuard::acquire(connect(&self.target)?, holder, ttl, Some(deadline))
    }

    /// SQLite's `PRAGMA integrity_check`: empty when the database is sound, else the problems.
    pub fn integrity_check(&self) -> Result<Vec<String>, StateError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StateError> {
        Ok(migrations::current_version(&self.conn)?)
    }
}

/// Read-only queries, over a store connection, a [`Snapshot`] or a [`WriteTx`].
#[derive(Clone, Copy)]
pub struct Reader<'c> {
    conn: &'c Connection,
}

impl Reader<'_> {
    /// The database's lineage and current serial.
    pub fn stamp(&self) -> Result<Stamp, StateError> {
        Ok(self
            .conn
            .query_row("SELECT lineage, serial FROM meta WHERE id = 1", [], |r| {
                Ok(Stamp {
                    lineage: r.get(0)?,
                    serial: r.get(1)?,
                })
            })?)
    }
}

/// What a backup holds, read back from the copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    pub stamp: Stamp,
    pub schema_version: u32,
    pub nodes: i64,
    pub requests: i64,
    pub builds: i64,
    pub uploads: i64,
}

/// Writes a consistent copy of the database at `src` to `dest` (SQLite's `VACUUM INTO`, one
/// read transaction): safe while a daemon is writing, unlike copying the file, whose WAL may
/// hold the newest commits. `src` is opened read-only and never migrated; the copy is a
/// complete database, owner-only like the original, and is read back for the summary so a
/// copy that cannot be read fails now rather than at restore time. Refused if `dest` exists.
pub fn backup(src: &Path, dest: &Path) -> Result<BackupSummary, StateError> {
    use rusqlite::OpenFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let read_only = |path: &Path| -> Result<Connection, StateError> {
        let open_err = |source| StateError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        Ok(conn)
    };
    let source = read_only(src)?;
    // VACUUM INTO takes a new or empty file: create it here, so that it is owner-only and an
    // existing file is never overwritten.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|source| StateError::Io {
            path: dest.to_owned(),
            source,
        })?;
    let copied = dest
        .to_str()
        .ok_or_else(|| StateError::Invalid(format!("{}: not a UTF-8 path", dest.display())))
        .and_then(|d| Ok(source.execute("VACUUM INTO ?1", [d]).map(|_| ())?))
        .and_then(|()| {
            let copy = read_only(dest)?;
            let count = |table: &str| -> Result<i64, StateError> {
                Ok(copy.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
            };
            Ok(BackupSummary {
                stamp: Reader { conn: &copy }.stamp()?,
                schema_version: copy.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                    [],
                    |r| r.get(0),
                )?,
                nodes: count("nodes")?,
                requests: count("node_requests")?,
                builds: count("image_builds")?,
                uploads: count("image_uploads")?,
            })
        });
    if copied.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    copied
}

/// A consistent read view; dropping it ends the read transaction.
pub struct Snapshot<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl Snapshot<'_> {
    pub fn read(&self) -> Reader<'_> {
        Reader { conn: &self.tx }
    }
}

/// An open write transaction (see [`Store::write`]): every mutation of the store is a method
/// of this type, so several of them commit together or not at all.
pub struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl WriteTx<'_> {
    /// Queries inside this transaction (they see its uncommitted changes).
    pub fn read(&self) -> Reader<'_> {
        Reader { conn: &self.tx }
    }

    fn commit(self, changes_before: u64) -> Result<(), StateError> {
        if self.tx.total_changes() > changes_before {
            self.tx
                .execute("UPDATE meta SET serial = serial + 1 WHERE id = 1", [])?;
        }
        self.tx.commit()?;
        Ok(())
    }

    /// The next value of the named sequence (see `sequences` in the schema).
    fn next_id(&self, sequence: &str) -> Result<i64, StateError> {
        let value: i64 = self
            .tx
            .prepare_cached("SELECT next_value FROM sequences WHERE name = ?1")?
            .query_row(params![sequence], |r| r.get(0))?;
        self.tx
            .prepare_cached("UPDATE sequences SET next_value = next_value + 1 WHERE name = ?1")?
            .execute(params![sequence])?;
        Ok(value)
    }

    /// The next id of the named sequence as upstream's zero-padded text (`"0000000042"`).
    fn next_text_id(&self, sequence: &str) -> Result<String, StateError> {
        Ok(format!("{:010}", self.next_id(sequence)?))
    }
}

/// Creates the file with mode 0600 if it does not exist and tightens an existing one (and any
/// `-wal`/`-shm` companions left by an earlier run) to 0600.
/// A JSON text column (list-valued columns, journal payloads), decoded into `T`; a column that
/// does not decode is a conversion failure naming the column.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn prepare_file(path: &Path) -> Result<(), StateError> {
    use std::fs::{OpenOptions, Permissions, set_permissions};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    set_permissions(path, Permissions::from_mode(0o600)).map_err(io)?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        if companion.exists() {
            set_permissions(&companion, Permissions::from_mode(0o600)).map_err(|source| {
                StateError::Io {
                    path: companion.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Opens a connection and applies the per-connection settings.
fn connect(target: &Target) -> Result<Connection, StateError> {
    let (name, path) = match target {
        Target::File(p) => (p.as_os_str().to_owned(), p.clone()),
        Target::Memory(uri) => (uri.into(), PathBuf::from(":memory:")),
    };
    let open_err = |source| StateError::Open {
        path: path.clone(),
        source,
    };
    let conn = Connection::open(&name).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    // FULL: a committed journal row survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    // The planner reads every node of a provider each pass; the rows of one provider are
    // spread over the whole table, so keep the table in memory: a 64 MiB page cache
    // (~150,000 nodes) and memory-mapped reads instead of one read() per page.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(open_err)?;
    conn.pragma_update(None, "mmap_size", 268_435_456_i64)
        .map_err(open_err)?;
    Ok(conn)
}

/// Switches the file to WAL. Changing the journal mode needs an exclusive lock that the busy
/// handler does not always wait for, so retry on `SQLITE_BUSY` within [`BUSY_TIMEOUT`].
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(format!("cannot enable WAL (journal mode stays {mode})")),
                ));
            }
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_moves_only_when_something_changed() {
        let mut store = Store::open_in_memory().unwrap();
        let s0 = store.read().stamp().unwrap();
        assert_eq!(s0.serial, 0);
        store.write(|_| Ok(())).unwrap();
        assert_eq!(store.read().stamp().unwrap(), s0);
        store
            .insert_node(&NewNode::new("p", "main", "ubuntu"))
            .unwrap();
        let s1 = store.read().stamp().unwrap();
        assert_eq!(s1.lineage, s0.lineage);
        assert_eq!(s1.serial, 1);
        // A failed transaction rolls back and leaves the serial alone.
        let err = store.write(|w| {
            w.insert_node(&NewNode::new("p", "main", "ubuntu"))?;
            Err::<(), _>(StateError::Invalid("abort".into()))
        });
        assert!(err.is_err());
        assert_eq!(store.read().stamp().unwrap().serial, 1);
        assert_eq!(store.read().nodes().unwrap().len(), 1);
    }

    #[test]
    fn backup_copies_what_is_committed_while_a_writer_is_busy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("state.db")).unwrap();
        store
            .insert_node(&NewNode::new("p", "main", "ubuntu"))
            .unwrap();
        // Another connection is in the middle of a write transaction.
        let mut other = Store::open(dir.path().join("state.db")).unwrap();
        let tx = other
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let busy = WriteTx { tx };
        busy.insert_node(&NewNode::new("p", "main", "uncommitted"))
            .unwrap();

        let dest = dir.path().join("backup.db");
        let summary = backup(&dir.path().join("state.db"), &dest).unwrap();
        drop(busy);
        assert_eq!(summary.nodes, 1);
        assert_eq!(summary.schema_version, SCHEMA_VERSION);
        assert_eq!(summary.stamp, store.read().stamp().unwrap());
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let copy = Store::open(&dest).unwrap();
        let labels: Vec<String> = copy
            .read()
            .nodes()
            .unwrap()
            .into_iter()
            .map(|n| n.label)
            .collect();
        assert_eq!(labels, ["ubuntu"]);
        assert_eq!(
            copy.read().stamp().unwrap(),
            store.read().stamp().unwrap(),
            "the copy has the same lineage and serial"
        );

        // An existing file is never overwritten.
        let e = backup(&dir.path().join("state.db"), &dest)
            .unwrap_err()
            .to_string();
        assert!(e.contains("backup.db"), "{e}");
        assert_eq!(Store::open(&dest).unwrap().read().nodes().unwrap().len(), 1);
    }

    #[test]
    fn node_counts_group_by_provider_label_and_state() {
        let mut store = Store::open_in_memory().unwrap();
        for (p, l) in [("east", "a"), ("east", "a"), ("east", "b"), ("west", "a")] {
            store.insert_node(&NewNode::new(p, "main", l)).unwrap();
        }
        let first = store.read().nodes().unwrap()[0].id.clone();
        store.set_node_state(&first, NodeState::Building).unwrap();
        let counts: Vec<(String, String, NodeState, u64)> = store
            .read()
            .node_counts()
            .unwrap()
            .into_iter()
            .map(|c| (c.provider, c.label, c.state, c.count))
            .collect();
        let row = |p: &str, l: &str, s, n| (p.to_owned(), l.to_owned(), s, n);
        assert_eq!(
            counts,
            [
                row("east", "a", NodeState::Building, 1),
                row("east", "a", NodeState::Init, 1),
                row("east", "b", NodeState::Init, 1),
                row("west", "a", NodeState::Init, 1),
            ]
        );
    }

    #[test]
    fn lineage_differs_between_databases() {
        let a = Store::open_in_memory().unwrap();
        let b = Store::open_in_memory().unwrap();
        assert_ne!(
            a.read().stamp().unwrap().lineage,
            b.read().stamp().unwrap().lineage
        );
    }

    #[test]
    fn snapshot_is_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut a = Store::open(&path).unwrap();
        let mut b = Store::open(&path).unwrap();
        a.insert_node(&NewNode::new("p", "main", "ubuntu")).unwrap();
        let snap = a.snapshot().unwrap();
        b.insert_node(&NewNode::new("p", "main", "ubuntu")).unwrap();
        assert_eq!(snap.read().nodes().unwrap().len(), 1);
        assert_eq!(snap.read().stamp().unwrap().serial, 1);
        drop(snap);
        assert_eq!(a.read().nodes().unwrap().len(), 2);
        assert_eq!(a.read().stamp().unwrap().serial, 2);
    }
}
