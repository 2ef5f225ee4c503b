//! Versioned schema migrations of the state store.
//!
//! The applied versions are recorded in the `schema_version` table (portable, unlike SQLite's
//! `PRAGMA user_version`). [`MIGRATIONS`] is the ordered list; adding schema version N+1 is one
//! new entry plus its SQL file. A database whose recorded version is above [`SCHEMA_VERSION`]
//! was written by a newer nodepool and is refused, never touched.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StateError;
use super::age::now_unix;

/// One schema step: applied exactly once, in a transaction, in version order.
pub(crate) struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every schema version, oldest first. Released entries are frozen.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema: nodes, requests, images, journal, leases",
        sql: include_str!("schema_v1.sql"),
    },
    Migration {
        version: 2,
        description: "image pauses; formats pruned from a build's files; node attributes",
        sql: include_str!("schema_v2.sql"),
    },
];

/// The SQL of one schema version's migration (for tests and tooling that check released
/// migrations stay frozen).
pub fn migration_sql(version: u32) -> Option<&'static str> {
    MIGRATIONS
        .iter()
        .find(|m| m.version == version)
        .map(|m| m.sql)
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
)";

/// The highest applied version (0 for an empty database).
pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Brings the database up to [`SCHEMA_VERSION`] (or to `target`, for tests of the runner), in one
/// immediate transaction so that two processes opening a fresh file at once cannot both migrate.
/// Seeds the `meta` row (lineage, serial 0) the first time.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, target: u32) -> Result<(), StateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = current_version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(StateError::SchemaTooNew {
            path: path.to_owned(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    if current >= target {
        return Ok(()); // dropping `tx` rolls back nothing: it made no change
    }
    tx.execute(CREATE_VERSION_TABLE, [])?;
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.description, now_unix()],
        )?;
    }
    let has_meta: Option<i64> = tx
        .query_row("SELECT 1 FROM meta WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    if has_meta.is_none() {
        tx.execute(
            "INSERT INTO meta (id, lineage, serial) VALUES (1, ?1, 0)",
            params![uuid::Uuid::new_v4().to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_ordered() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "migration {} out of order",
                m.description
            );
        }
    }

    #[test]
    fn from_every_earlier_version() {
        // Build a database at each earlier version with the runner itself, then upgrade it.
        for start in 0..SCHEMA_VERSION {
            let mut conn = Connection::open_in_memory().unwrap();
            if start > 0 {
                migrate(&mut conn, Path::new(":memory:"), start).unwrap();
            }
            assert_eq!(current_version(&conn).unwrap(), start);
            migrate(&mut conn, Path::new(":memory:"), SCHEMA_VERSION).unwrap();
            assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
            let applied: i64 = conn
                .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(applied, i64::from(SCHEMA_VERSION));
        }
    }

    #[test]
    fn rerun_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:"), SCHEMA_VERSION).unwrap();
        let lineage: String = conn
            .query_row("SELECT lineage FROM meta", [], |r| r.get(0))
            .unwrap();
        migrate(&mut conn, Path::new(":memory:"), SCHEMA_VERSION).unwrap();
        let again: String = conn
            .query_row("SELECT lineage FROM meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(lineage, again);
    }

    #[test]
    fn newer_database_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new("x.db"), SCHEMA_VERSION).unwrap();
        conn.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?1, 'future', 0)",
            params![SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = migrate(&mut conn, Path::new("x.db"), SCHEMA_VERSION).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StateError::SchemaTooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{text}"
        );
        assert!(
            text.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "{text}"
        );
        assert!(text.contains(&format!("up to {SCHEMA_VERSION}")), "{text}");
    }
}
