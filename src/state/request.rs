//! Node requests: what consumers asked for, and in which order they are served.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, json_column, now_unix};

text_enum! {
    /// The life of a node request (upstream: requested, pending, fulfilled, failed).
    /// `requested → pending | fulfilled | failed`, `pending → fulfilled | failed | requested`
    /// (back to the queue when the nodes being launched for it were lost).
    pub enum RequestState ("request state") {
        Requested => "requested",
        Pending => "pending",
        Fulfilled => "fulfilled",
        Failed => "failed",
    }
}

impl RequestState {
    /// The request state machine.
    pub fn can_transition_to(self, to: RequestState) -> bool {
        use RequestState::*;
        matches!(
            (self, to),
            (Requested, Pending | Fulfilled | Failed) | (Pending, Fulfilled | Failed | Requested)
        )
    }

    /// Still to be served (`requested` or `pending`).
    pub fn is_open(self) -> bool {
        matches!(self, RequestState::Requested | RequestState::Pending)
    }
}

/// A node request row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub id: String,
    pub state: RequestState,
    /// One label per node wanted.
    pub labels: Vec<String>,
    pub requestor: String,
    /// Lower is served first (upstream's convention; 100 is normal).
    pub priority: i64,
    pub tenant: Option<String>,
    pub created_at: i64,
    pub state_time: i64,
    /// Why it failed or was declined.
    pub declined_reason: Option<String>,
    /// Node ids assigned, in label order.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// A request to insert (state `requested`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    pub labels: Vec<String>,
    pub requestor: String,
    pub priority: i64,
    pub tenant: Option<String>,
}

const SELECT: &str = "SELECT id, state, labels, requestor, priority, tenant, created_at, \
                      state_time, declined_reason, nodes FROM node_requests";

fn from_row(r: &Row<'_>) -> rusqlite::Result<NodeRequest> {
    Ok(NodeRequest {
        id: r.get(0)?,
        state: r.get(1)?,
        labels: json_column(r, 2)?,
        requestor: r.get(3)?,
        priority: r.get(4)?,
        tenant: r.get(5)?,
        created_at: r.get(6)?,
        state_time: r.get(7)?,
        declined_reason: r.get(8)?,
        nodes: json_column(r, 9)?,
    })
}

fn not_found(id: &str) -> StateError {
    StateError::NotFound {
        kind: "request",
        id: id.to_owned(),
    }
}

impl WriteTx<'_> {
    /// Inserts a request in state `requested`.
    pub fn insert_request(&self, new: &NewRequest) -> Result<NodeRequest, StateError> {
        let now = now_unix();
        let req = NodeRequest {
            id: self.next_text_id("request")?,
            state: RequestState::Requested,
            labels: new.labels.clone(),
            requestor: new.requestor.clone(),
            priority: new.priority,
            tenant: new.tenant.clone(),
            created_at: now,
            state_time: now,
            declined_reason: None,
            nodes: Vec::new(),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO node_requests (id, state, labels, requestor, priority, tenant, \
                 created_at, state_time, declined_reason, nodes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, '[]')",
            )?
            .execute(params![
                req.id,
                req.state,
                serde_json::to_string(&req.labels)?,
                req.requestor,
                req.priority,
                req.tenant,
                req.created_at,
                req.state_time
            ])?;
        Ok(req)
    }

    /// Moves a request along its state machine; `reason` is recorded (e.g. for `failed`).
    pub fn set_request_state(
        &self,
        id: &str,
        to: RequestState,
        reason: Option<&str>,
    ) -> Result<NodeRequest, StateError> {
        let mut req = self.read().request(id)?.ok_or_else(|| not_found(id))?;
        if !req.state.can_transition_to(to) {
            return Err(StateError::IllegalTransition {
                kind: "request",
                id: id.to_owned(),
                from: req.state.to_string(),
                to: to.to_string(),
            });
        }
        let now = now_unix();
        self.tx
            .prepare_cached(
                "UPDATE node_requests SET state = ?2, state_time = ?3, \
                 declined_reason = COALESCE(?4, declined_reason) WHERE id = ?1",
            )?
            .execute(params![id, to, now, reason])?;
        req.state = to;
        req.state_time = now;
        if let Some(reason) = reason {
            req.declined_reason = Some(reason.to_owned());
        }
        Ok(req)
    }

    /// Records the nodes assigned to a request.
    pub fn set_request_nodes(&self, id: &str, nodes: &[String]) -> Result<(), StateError> {
        let n = self
            .tx
            .prepare_cached("UPDATE node_requests SET nodes = ?2 WHERE id = ?1")?
            .execute(params![id, serde_json::to_string(nodes)?])?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Removes a request (the consumer withdrew it or it was served and acknowledged).
    pub fn remove_request(&self, id: &str) -> Result<(), StateError> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM node_requests WHERE id = ?1")?
            .execute(params![id])?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

impl Reader<'_> {
    pub fn request(&self, id: &str) -> Result<Option<NodeRequest>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
            .query_row(params![id], from_row)
            .optional()?)
    }

    /// Every request, in id order (`nodepool request-list`).
    pub fn requests(&self) -> Result<Vec<NodeRequest>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Requests still to serve, in service order: priority (lower first), then age, then id.
    pub fn open_requests(&self) -> Result<Vec<NodeRequest>, StateError> {
        let mut out = Vec::new();
        // Two index range scans merged, instead of an IN (...) that would need a sort.
        for state in [RequestState::Requested, RequestState::Pending] {
            let mut stmt = self.conn.prepare_cached(&format!(
                "{SELECT} WHERE state = ?1 ORDER BY priority, created_at, id"
            ))?;
            let rows = stmt.query_map(params![state], from_row)?;
            out.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        out.sort_by(|a, b| {
            (a.priority, a.created_at, &a.id).cmp(&(b.priority, b.created_at, &b.id))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn new(priority: i64, label: &str) -> NewRequest {
        NewRequest {
            labels: vec![label.into()],
            requestor: "zuul-scheduler".into(),
            priority,
            tenant: Some("openstack".into()),
        }
    }

    #[test]
    fn open_requests_in_priority_order() {
        let mut store = Store::open_in_memory().unwrap();
        let ids: Vec<String> = store
            .write(|w| {
                [new(200, "a"), new(100, "b"), new(100, "c"), new(50, "d")]
                    .iter()
                    .map(|r| w.insert_request(r).map(|r| r.id))
                    .collect()
            })
            .unwrap();
        store
            .write(|w| {
                w.set_request_state(&ids[2], RequestState::Pending, None)?;
                w.set_request_state(&ids[3], RequestState::Fulfilled, None)
            })
            .unwrap();
        let open: Vec<String> = store
            .read()
            .open_requests()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(open, vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]);
        assert_eq!(store.read().requests().unwrap().len(), 4);
    }

    #[test]
    fn transitions_and_fields() {
        let mut store = Store::open_in_memory().unwrap();
        let r = store.write(|w| w.insert_request(&new(100, "x"))).unwrap();
        assert_eq!(r.id, "0000000001");
        let failed = store
            .write(|w| {
                w.set_request_state(&r.id, RequestState::Failed, Some("no provider has label x"))
            })
            .unwrap();
        assert_eq!(
            failed.declined_reason.as_deref(),
            Some("no provider has label x")
        );
        let err = store
            .write(|w| w.set_request_state(&r.id, RequestState::Pending, None))
            .unwrap_err();
        assert!(matches!(err, StateError::IllegalTransition { .. }), "{err}");
        store
            .write(|w| w.set_request_nodes(&r.id, &["0000000007".to_string()]))
            .unwrap();
        let stored = store.read().request(&r.id).unwrap().unwrap();
        assert_eq!(stored.nodes, vec!["0000000007"]);
        assert_eq!(stored.state, RequestState::Failed);
        store.write(|w| w.remove_request(&r.id)).unwrap();
        assert!(store.read().request(&r.id).unwrap().is_none());
    }
}
