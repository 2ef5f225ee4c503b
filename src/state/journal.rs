//! The action journal: every planned cloud mutation, recorded before it is sent.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, json_column, now_unix};

text_enum! {
    /// `pending → running → done | failed`, and `pending → failed` (abandoned before sending).
    pub enum JournalStatus ("journal status") {
        Pending => "pending",
        Running => "running",
        Done => "done",
        Failed => "failed",
    }
}

impl JournalStatus {
    pub fn can_transition_to(self, to: JournalStatus) -> bool {
        use JournalStatus::*;
        matches!(
            (self, to),
            (Pending, Running | Failed) | (Running, Done | Failed)
        )
    }
}

/// One journalled action.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub plan_id: String,
    /// Position in the plan.
    pub seq: i64,
    /// What is done, e.g. `create-server`, `delete-image`.
    pub kind: String,
    /// What it is done to, e.g. `provider.rax-dfw.node.0000000042`.
    pub address: String,
    /// Why the planner decided it.
    pub reason: String,
    /// The request's parameters (never credentials).
    pub payload: serde_json::Value,
    pub status: JournalStatus,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// An action to journal (status `pending`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewJournalEntry {
    pub plan_id: String,
    pub seq: i64,
    pub kind: String,
    pub address: String,
    pub reason: String,
    pub payload: serde_json::Value,
}

const SELECT: &str = "SELECT id, plan_id, seq, kind, address, reason, payload, status, error, \
                      created_at, started_at, finished_at FROM journal";

fn from_row(r: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    Ok(JournalEntry {
        id: r.get(0)?,
        plan_id: r.get(1)?,
        seq: r.get(2)?,
        kind: r.get(3)?,
        address: r.get(4)?,
        reason: r.get(5)?,
        payload: json_column(r, 6)?,
        status: r.get(7)?,
        error: r.get(8)?,
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
    })
}

impl WriteTx<'_> {
    /// Journals an action as `pending`. Commit before sending the request it describes.
    pub fn journal_insert(&self, new: &NewJournalEntry) -> Result<JournalEntry, StateError> {
        let entry = JournalEntry {
            id: self.next_id("journal")?,
            plan_id: new.plan_id.clone(),
            seq: new.seq,
            kind: new.kind.clone(),
            address: new.address.clone(),
            reason: new.reason.clone(),
            payload: new.payload.clone(),
            status: JournalStatus::Pending,
            error: None,
            created_at: now_unix(),
            started_at: None,
            finished_at: None,
        };
        self.tx
            .prepare_cached(
                "INSERT INTO journal (id, plan_id, seq, kind, address, reason, payload, status, \
                 error, created_at, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, NULL, NULL)",
            )?
            .execute(params![
                entry.id,
                entry.plan_id,
                entry.seq,
                entry.kind,
                entry.address,
                entry.reason,
                serde_json::to_string(&entry.payload)?,
                entry.status,
                entry.created_at
            ])?;
        Ok(entry)
    }

    /// Marks an action `running` (the request is being sent).
    pub fn journal_start(&self, id: i64) -> Result<JournalEntry, StateError> {
        self.journal_move(id, JournalStatus::Running, None)
    }

    /// Marks an action `done`.
    pub fn journal_done(&self, id: i64) -> Result<JournalEntry, StateError> {
        self.journal_move(id, JournalStatus::Done, None)
    }

    /// Marks an action `failed` with the (already redacted) error text.
    pub fn journal_fail(&self, id: i64, error: &str) -> Result<JournalEntry, StateError> {
        self.journal_move(id, JournalStatus::Failed, Some(error))
    }

    fn journal_move(
        &self,
        id: i64,
        to: JournalStatus,
        error: Option<&str>,
    ) -> Result<JournalEntry, StateError> {
        let entry = self.read().journal_entry(id)?.ok_or(StateError::NotFound {
            kind: "journal entry",
            id: id.to_string(),
        })?;
        if !entry.status.can_transition_to(to) {
            return Err(StateError::IllegalTransition {
                kind: "journal entry",
                id: id.to_string(),
                from: entry.status.to_string(),
                to: to.to_string(),
            });
        }
        let now = now_unix();
        let sql = if to == JournalStatus::Running {
            "UPDATE journal SET status = ?2, error = ?3, started_at = ?4 WHERE id = ?1"
        } else {
            "UPDATE journal SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1"
        };
        self.tx
            .prepare_cached(sql)?
            .execute(params![id, to, error, now])?;
        self.read().journal_entry(id)?.ok_or(StateError::NotFound {
            kind: "journal entry",
            id: id.to_string(),
        })
    }
}

impl Reader<'_> {
    pub fn journal_entry(&self, id: i64) -> Result<Option<JournalEntry>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
            .query_row(params![id], from_row)
            .optional()?)
    }

    /// The actions of one plan, in plan order.
    pub fn journal_of_plan(&self, plan_id: &str) -> Result<Vec<JournalEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} WHERE plan_id = ?1 ORDER BY seq"))?;
        let rows = stmt.query_map(params![plan_id], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Actions whose outcome is unknown (`pending` or `running`), oldest first: what crash
    /// recovery must re-observe before planning again.
    pub fn unfinished_journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut out = Vec::new();
        for status in [JournalStatus::Pending, JournalStatus::Running] {
            let mut stmt = self
                .conn
                .prepare_cached(&format!("{SELECT} WHERE status = ?1 ORDER BY id"))?;
            let rows = stmt.query_map(params![status], from_row)?;
            out.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn action(plan: &str, seq: i64) -> NewJournalEntry {
        NewJournalEntry {
            plan_id: plan.into(),
            seq,
            kind: "create-server".into(),
            address: format!("provider.p.node.{seq:010}"),
            reason: "label ubuntu below min-ready".into(),
            payload: serde_json::json!({"flavor": "m1.small", "name": format!("np{seq:010}")}),
        }
    }

    #[test]
    fn lifecycle_and_recovery_view() {
        let mut store = Store::open_in_memory().unwrap();
        let ids: Vec<i64> = store
            .write(|w| {
                (1..=4)
                    .map(|s| w.journal_insert(&action("plan-a", s)).map(|e| e.id))
                    .collect()
            })
            .unwrap();
        store
            .write(|w| {
                w.journal_start(ids[0])?;
                w.journal_done(ids[0])?;
                w.journal_start(ids[1])?;
                w.journal_fail(ids[1], "409 Conflict: quota exceeded")?;
                w.journal_start(ids[2])
            })
            .unwrap();
        let unfinished: Vec<(i64, JournalStatus)> = store
            .read()
            .unfinished_journal()
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.status))
            .collect();
        assert_eq!(
            unfinished,
            vec![
                (ids[2], JournalStatus::Running),
                (ids[3], JournalStatus::Pending)
            ]
        );
        let plan = store.read().journal_of_plan("plan-a").unwrap();
        assert_eq!(
            plan.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            plan[1].error.as_deref(),
            Some("409 Conflict: quota exceeded")
        );
        assert!(plan[0].started_at.is_some() && plan[0].finished_at.is_some());
        assert_eq!(plan[0].payload["flavor"], "m1.small");
        // done is final; a (plan, seq) pair is journalled once.
        assert!(store.write(|w| w.journal_start(ids[0])).is_err());
        assert!(
            store
                .write(|w| w.journal_insert(&action("plan-a", 1)))
                .is_err()
        );
    }
}
