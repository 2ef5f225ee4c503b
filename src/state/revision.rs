//! Config revisions: which revision of the config repository was attempted and applied.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, now_unix};

text_enum! {
    /// `ok`: valid and applied; `invalid`: rejected by validation; `failed`: the apply failed.
    pub enum ConfigStatus ("config status") {
        Ok => "ok",
        Invalid => "invalid",
        Failed => "failed",
    }
}

/// One attempt to apply a config revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigRevision {
    pub id: i64,
    /// A git commit or a file hash.
    pub revision: String,
    /// Where it came from (repository URL and path, or file path).
    pub source: String,
    pub status: ConfigStatus,
    /// Validation or apply errors, already rendered for operators.
    pub errors: Option<String>,
    pub attempted_at: i64,
    /// Set when `status` is `ok`.
    pub applied_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConfigRevision {
    pub revision: String,
    pub source: String,
    pub status: ConfigStatus,
    pub errors: Option<String>,
}

const SELECT: &str = "SELECT id, revision, source, status, errors, attempted_at, applied_at \
                      FROM config_revisions";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ConfigRevision> {
    Ok(ConfigRevision {
        id: r.get(0)?,
        revision: r.get(1)?,
        source: r.get(2)?,
        status: r.get(3)?,
        errors: r.get(4)?,
        attempted_at: r.get(5)?,
        applied_at: r.get(6)?,
    })
}

impl WriteTx<'_> {
    /// Records an attempt (applied now if its status is `ok`).
    pub fn record_config_revision(
        &self,
        new: &NewConfigRevision,
    ) -> Result<ConfigRevision, StateError> {
        let now = now_unix();
        let rev = ConfigRevision {
            id: self.next_id("config_revision")?,
            revision: new.revision.clone(),
            source: new.source.clone(),
            status: new.status,
            errors: new.errors.clone(),
            attempted_at: now,
            applied_at: (new.status == ConfigStatus::Ok).then_some(now),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO config_revisions (id, revision, source, status, errors, \
                 attempted_at, applied_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                rev.id,
                rev.revision,
                rev.source,
                rev.status,
                rev.errors,
                rev.attempted_at,
                rev.applied_at
            ])?;
        Ok(rev)
    }
}

impl Reader<'_> {
    /// The most recent attempt, whatever its outcome.
    pub fn last_attempted_config(&self) -> Result<Option<ConfigRevision>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{SELECT} ORDER BY id DESC LIMIT 1"))?
            .query_row([], from_row)
            .optional()?)
    }

    /// The most recent successfully applied revision.
    pub fn last_applied_config(&self) -> Result<Option<ConfigRevision>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "{SELECT} WHERE applied_at IS NOT NULL ORDER BY applied_at DESC, id DESC LIMIT 1"
            ))?
            .query_row([], from_row)
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[test]
    fn last_applied_and_last_attempted() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.read().last_applied_config().unwrap().is_none());
        let rec = |rev: &str, status, errors: Option<&str>| NewConfigRevision {
            revision: rev.into(),
            source: "https://git.example/ci/nodepool-config nodepool.yaml".into(),
            status,
            errors: errors.map(str::to_owned),
        };
        store
            .write(|w| {
                w.record_config_revision(&rec("aaa111", ConfigStatus::Ok, None))?;
                w.record_config_revision(&rec(
                    "bbb222",
                    ConfigStatus::Invalid,
                    Some("providers[0].pools[0]: unknown label ubuntu-nobel"),
                ))
            })
            .unwrap();
        let applied = store.read().last_applied_config().unwrap().unwrap();
        assert_eq!(applied.revision, "aaa111");
        assert!(applied.applied_at.is_some());
        let attempted = store.read().last_attempted_config().unwrap().unwrap();
        assert_eq!(attempted.revision, "bbb222");
        assert_eq!(attempted.status, ConfigStatus::Invalid);
        assert!(attempted.applied_at.is_none());
        assert!(attempted.errors.unwrap().contains("ubuntu-nobel"));
    }
}
