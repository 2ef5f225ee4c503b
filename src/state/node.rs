//! Nodes: the node state machine, the `nodes` row and its queries.

use std::sync::LazyLock;

use rusqlite::{OptionalExtension, Row, Statement, params};
use serde::{Deserialize, Serialize};

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, json_column, now_unix};

text_enum! {
    /// The life of a node, as in upstream Nodepool, plus `init` for crash safety.
    ///
    /// | from       | to                              |
    /// |------------|---------------------------------|
    /// | `init`     | `building`, `failed`, `deleting` |
    /// | `building` | `ready`, `failed`, `deleting`   |
    /// | `ready`    | `in-use`, `hold`, `deleting`    |
    /// | `in-use`   | `used`, `hold`, `deleting`      |
    /// | `used`     | `deleting`                      |
    /// | `hold`     | `used`, `deleting`              |
    /// | `failed`   | `deleting`                      |
    /// | `deleting` | (row removed: [`WriteTx::remove_node`]) |
    ///
    /// * `init`: the row (id, hostname) exists and a journal row says a server is about to be
    ///   created, but the create request may not have been sent. After a crash, a node found
    ///   in `init` is looked up by hostname in the cloud: it either went `building` or is
    ///   deleted. Upstream Nodepool has the same placeholder state.
    /// * `building`: the server create was sent; waiting for it to become active/reachable.
    /// * `ready`: available, possibly allocated to a request (`allocated_request`).
    /// * `in-use`: locked by the consumer (Zuul) and running a job.
    /// * `used`: the job finished; the node is never reused and goes to `deleting`.
    /// * `hold`: kept for an operator (autohold from `in-use`, or a manual hold of a `ready`
    ///   node); leaves by expiry or operator delete (`deleting`) or when the consumer releases
    ///   the hold (`used`, as Zuul does when an autohold request is deleted).
    /// * `failed`: the launch failed; the server (if any) must still be deleted.
    /// * `deleting`: a delete was decided; the reconciler deletes the server and then the row.
    ///
    /// Only `init` and `building` are initial states. `used`, `failed` and `deleting` never
    /// lead back to service. Forced deletes (operator `delete`, a server that vanished from the
    /// cloud) are why every state, not only the end of a node's life, leads to `deleting`.
    pub enum NodeState ("node state") {
        Init => "init",
        Building => "building",
        Ready => "ready",
        InUse => "in-use",
        Used => "used",
        Hold => "hold",
        Deleting => "deleting",
        Failed => "failed",
    }
}

impl NodeState {
    /// The single definition of the node state machine (see the type's docs). Staying in
    /// the same state is not a transition.
    pub fn can_transition_to(self, to: NodeState) -> bool {
        use NodeState::*;
        matches!(
            (self, to),
            (Init, Building | Failed | Deleting)
                | (Building, Ready | Failed | Deleting)
                | (Ready, InUse | Hold | Deleting)
                | (InUse, Used | Hold | Deleting)
                | (Used, Deleting)
                | (Hold, Used | Deleting)
                | (Failed, Deleting)
        )
    }

    /// States a node row may be created in.
    pub fn is_initial(self) -> bool {
        matches!(self, NodeState::Init | NodeState::Building)
    }

    /// States from which the row may be removed.
    pub fn is_removable(self) -> bool {
        self == NodeState::Deleting
    }
}

/// The mutable attributes of a node: everything except identity (id, provider, pool, label,
/// hostname), state and the timestamps. Changed with [`WriteTx::update_node`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeDetails {
    /// The cloud's server UUID once the create request was answered.
    pub server_id: Option<String>,
    pub public_ipv4: Option<String>,
    pub private_ipv4: Option<String>,
    pub public_ipv6: Option<String>,
    /// The address consumers connect to.
    pub interface_ip: Option<String>,
    pub region: Option<String>,
    pub az: Option<String>,
    pub cloud: Option<String>,
    pub launch_attempts: u32,
    /// The request this ready node is allocated to.
    pub allocated_request: Option<String>,
    pub hold_job: Option<String>,
    pub hold_reason: Option<String>,
    /// Seconds a held node is kept after entering `hold` (upstream's `hold_expiration`).
    pub hold_expiration: Option<i64>,
    pub comment: Option<String>,
    pub username: Option<String>,
    /// `ssh`, `winrm`, `network_cli`, ...
    pub connection_type: Option<String>,
    pub connection_port: Option<u16>,
    /// SSH host keys as `"ssh-ed25519 AAAA..."` lines (public keys, not secrets).
    pub host_keys: Vec<String>,
    pub python_path: Option<String>,
    pub shell_type: Option<String>,
    /// The diskimage or cloud-image name the node boots.
    pub image_name: Option<String>,
    /// Our [`super::ImageUpload`] id, for diskimages.
    pub upload_id: Option<String>,
    /// The cloud's image id booted.
    pub image_id: Option<String>,
    pub flavor: Option<String>,
    pub cores: Option<u32>,
    /// MiB.
    pub ram: Option<u32>,
    /// Quota instances the node counts for (normally 1).
    pub instances: Option<u32>,
    pub last_error: Option<String>,
    /// The pool's `node-attributes` when the node was launched, passed on to its user.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A node row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Zero-padded sequence number, e.g. `"0000000042"`.
    pub id: String,
    pub provider: String,
    pub pool: String,
    pub label: String,
    /// The server name, `np<id>` unless given.
    pub hostname: String,
    pub state: NodeState,
    /// Unix seconds of the last state change.
    pub state_time: i64,
    pub created_at: i64,
    #[serde(flatten)]
    pub details: NodeDetails,
}

/// The columns of a node the planner needs on every pass, read from the covering index
/// `nodes_by_provider` without touching the table (see [`Reader::node_summaries_of_provider`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeSummary {
    pub id: String,
    pub provider: String,
    pub pool: String,
    pub label: String,
    pub hostname: String,
    pub state: NodeState,
    pub state_time: i64,
    pub server_id: Option<String>,
    pub allocated_request: Option<String>,
    pub hold_expiration: Option<i64>,
    pub image_name: Option<String>,
    pub upload_id: Option<String>,
    pub launch_attempts: u32,
    pub cores: Option<u32>,
    pub ram: Option<u32>,
    pub instances: Option<u32>,
}

/// The columns of [`NodeSummary`], in field order; equal to the `nodes_by_provider` index.
const SUMMARY_COLUMNS: &str = "id, provider, pool, label, hostname, state, state_time, \
    server_id, allocated_request, hold_expiration, image_name, upload_id, launch_attempts, \
    cores, ram, instances";

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<NodeSummary> {
    Ok(NodeSummary {
        id: r.get(0)?,
        provider: r.get(1)?,
        pool: r.get(2)?,
        label: r.get(3)?,
        hostname: r.get(4)?,
        state: r.get(5)?,
        state_time: r.get(6)?,
        server_id: r.get(7)?,
        allocated_request: r.get(8)?,
        hold_expiration: r.get(9)?,
        image_name: r.get(10)?,
        upload_id: r.get(11)?,
        launch_attempts: r.get(12)?,
        cores: r.get(13)?,
        ram: r.get(14)?,
        instances: r.get(15)?,
    })
}

/// A node to insert. `state` must be initial (`init` or `building`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub provider: String,
    pub pool: String,
    pub label: String,
    /// `None`: `np<id>` (upstream's naming).
    pub hostname: Option<String>,
    pub state: NodeState,
    pub details: NodeDetails,
}

impl NewNode {
    /// A node in `init` with default details and the default hostname.
    pub fn new(
        provider: impl Into<String>,
        pool: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        NewNode {
            provider: provider.into(),
            pool: pool.into(),
            label: label.into(),
            hostname: None,
            state: NodeState::Init,
            details: NodeDetails::default(),
        }
    }
}

/// How many nodes of one provider and label are in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeCount {
    pub provider: String,
    pub label: String,
    pub state: NodeState,
    pub count: u64,
}

/// How many nodes are in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub state: NodeState,
    pub count: u64,
}

/// Identity, state and time columns: indices 0..8 of every node SELECT.
const CORE_COLUMNS: [&str; 8] = [
    "id",
    "provider",
    "pool",
    "label",
    "hostname",
    "state",
    "state_time",
    "created_at",
];

/// [`NodeDetails`] columns, in field order: indices 8.. of every node SELECT.
const DETAIL_COLUMNS: [&str; 29] = [
    "server_id",
    "public_ipv4",
    "private_ipv4",
    "public_ipv6",
    "interface_ip",
    "region",
    "az",
    "cloud",
    "launch_attempts",
    "allocated_request",
    "hold_job",
    "hold_reason",
    "hold_expiration",
    "comment",
    "username",
    "connection_type",
    "connection_port",
    "host_keys",
    "python_path",
    "shell_type",
    "image_name",
    "upload_id",
    "image_id",
    "flavor",
    "cores",
    "ram",
    "instances",
    "last_error",
    "attributes",
];

static SELECT: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<&str> = CORE_COLUMNS
        .iter()
        .chain(&DETAIL_COLUMNS)
        .copied()
        .collect();
    format!("SELECT {} FROM nodes", cols.join(", "))
});

static INSERT: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<&str> = CORE_COLUMNS
        .iter()
        .chain(&DETAIL_COLUMNS)
        .copied()
        .collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO nodes ({}) VALUES ({})",
        cols.join(", "),
        marks.join(", ")
    )
});

/// `UPDATE nodes SET <details> = ?2.. WHERE id = ?1`.
static UPDATE_DETAILS: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = DETAIL_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect();
    format!("UPDATE nodes SET {} WHERE id = ?1", sets.join(", "))
});

fn node_from_row(r: &Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        id: r.get(0)?,
        provider: r.get(1)?,
        pool: r.get(2)?,
        label: r.get(3)?,
        hostname: r.get(4)?,
        state: r.get(5)?,
        state_time: r.get(6)?,
        created_at: r.get(7)?,
        details: NodeDetails {
            server_id: r.get(8)?,
            public_ipv4: r.get(9)?,
            private_ipv4: r.get(10)?,
            public_ipv6: r.get(11)?,
            interface_ip: r.get(12)?,
            region: r.get(13)?,
            az: r.get(14)?,
            cloud: r.get(15)?,
            launch_attempts: r.get(16)?,
            allocated_request: r.get(17)?,
            hold_job: r.get(18)?,
            hold_reason: r.get(19)?,
            hold_expiration: r.get(20)?,
            comment: r.get(21)?,
            username: r.get(22)?,
            connection_type: r.get(23)?,
            connection_port: r.get(24)?,
            host_keys: json_column(r, 25)?,
            python_path: r.get(26)?,
            shell_type: r.get(27)?,
            image_name: r.get(28)?,
            upload_id: r.get(29)?,
            image_id: r.get(30)?,
            flavor: r.get(31)?,
            cores: r.get(32)?,
            ram: r.get(33)?,
            instances: r.get(34)?,
            last_error: r.get(35)?,
            attributes: json_column(r, 36)?,
        },
    })
}

/// Binds the details to parameters `first..first + 29` (1-based), in [`DETAIL_COLUMNS`] order.
fn bind_details(stmt: &mut Statement<'_>, first: usize, d: &NodeDetails) -> Result<(), StateError> {
    let host_keys = serde_json::to_string(&d.host_keys)?;
    let attributes = serde_json::to_string(&d.attributes)?;
    let values: [&dyn rusqlite::ToSql; 29] = [
        &d.server_id,
        &d.public_ipv4,
        &d.private_ipv4,
        &d.public_ipv6,
        &d.interface_ip,
        &d.region,
        &d.az,
        &d.cloud,
        &d.launch_attempts,
        &d.allocated_request,
        &d.hold_job,
        &d.hold_reason,
        &d.hold_expiration,
        &d.comment,
        &d.username,
        &d.connection_type,
        &d.connection_port,
        &host_keys,
        &d.python_path,
        &d.shell_type,
        &d.image_name,
        &d.upload_id,
        &d.image_id,
        &d.flavor,
        &d.cores,
        &d.ram,
        &d.instances,
        &d.last_error,
        &attributes,
    ];
    for (i, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(first + i, v)?;
    }
    Ok(())
}

impl WriteTx<'_> {
    /// Inserts a node with the next id; its hostname defaults to `np<id>`.
    pub fn insert_node(&self, new: &NewNode) -> Result<Node, StateError> {
        let given = new.hostname.clone();
        self.insert_node_named(new, |id| given.unwrap_or_else(|| format!("np{id}")))
    }

    /// Inserts a node with the next id and the hostname `hostname(id)` (for provider
    /// `hostname-format`s that contain the node id); `new.hostname` is ignored.
    pub fn insert_node_named(
        &self,
        new: &NewNode,
        hostname: impl FnOnce(&str) -> String,
    ) -> Result<Node, StateError> {
        if !new.state.is_initial() {
            return Err(StateError::Invalid(format!(
                "a node is created in state init or building, not {}",
                new.state
            )));
        }
        let id = self.next_text_id("node")?;
        let now = now_unix();
        let node = Node {
            hostname: hostname(&id),
            id,
            provider: new.provider.clone(),
            pool: new.pool.clone(),
            label: new.label.clone(),
            state: new.state,
            state_time: now,
            created_at: now,
            details: new.details.clone(),
        };
        let mut stmt = self.tx.prepare_cached(&INSERT)?;
        let core: [&dyn rusqlite::ToSql; 8] = [
            &node.id,
            &node.provider,
            &node.pool,
            &node.label,
            &node.hostname,
            &node.state,
            &node.state_time,
            &node.created_at,
        ];
        for (i, v) in core.into_iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, v)?;
        }
        bind_details(&mut stmt, 9, &node.details)?;
        stmt.raw_execute()?;
        Ok(node)
    }

    /// Moves node `id` to `to`, enforcing [`NodeState::can_transition_to`]; sets `state_time`.
    pub fn set_node_state(&self, id: &str, to: NodeState) -> Result<Node, StateError> {
        let mut node = self.read().node(id)?.ok_or_else(|| not_found(id))?;
        if !node.state.can_transition_to(to) {
            return Err(StateError::IllegalTransition {
                kind: "node",
                id: id.to_owned(),
                from: node.state.to_string(),
                to: to.to_string(),
            });
        }
        let now = now_unix();
        self.tx
            .prepare_cached("UPDATE nodes SET state = ?2, state_time = ?3 WHERE id = ?1")?
            .execute(params![id, to, now])?;
        node.state = to;
        node.state_time = now;
        Ok(node)
    }

    /// A new launch attempt of a `building` node (its server was replaced): `state_time`
    /// restarts, so the per-attempt timeouts count from this attempt.
    pub fn restart_attempt(&self, id: &str) -> Result<Node, StateError> {
        let mut node = self.read().node(id)?.ok_or_else(|| not_found(id))?;
        if node.state != NodeState::Building {
            return Err(StateError::IllegalTransition {
                kind: "node",
                id: id.to_owned(),
                from: node.state.to_string(),
                to: "building (new attempt)".into(),
            });
        }
        let now = now_unix();
        self.tx
            .prepare_cached("UPDATE nodes SET state_time = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        node.state_time = now;
        Ok(node)
    }

    /// Changes a node's details (never its state): `f` edits a copy which is written back.
    pub fn update_node(
        &self,
        id: &str,
        f: impl FnOnce(&mut NodeDetails),
    ) -> Result<Node, StateError> {
        let mut node = self.read().node(id)?.ok_or_else(|| not_found(id))?;
        f(&mut node.details);
        let mut stmt = self.tx.prepare_cached(&UPDATE_DETAILS)?;
        stmt.raw_bind_parameter(1, &node.id)?;
        bind_details(&mut stmt, 2, &node.details)?;
        stmt.raw_execute()?;
        Ok(node)
    }

    /// Removes a node row; only a `deleting` node (its server is gone) may be removed.
    pub fn remove_node(&self, id: &str) -> Result<(), StateError> {
        let node = self.read().node(id)?.ok_or_else(|| not_found(id))?;
        if !node.state.is_removable() {
            return Err(StateError::IllegalTransition {
                kind: "node",
                id: id.to_owned(),
                from: node.state.to_string(),
                to: "removed".into(),
            });
        }
        self.tx
            .prepare_cached("DELETE FROM nodes WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }
}

fn not_found(id: &str) -> StateError {
    StateError::NotFound {
        kind: "node",
        id: id.to_owned(),
    }
}

impl Reader<'_> {
    fn query_nodes(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<Node>, StateError> {
        let sql = format!("{} {tail}", *SELECT);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(p, node_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One node by id.
    pub fn node(&self, id: &str) -> Result<Option<Node>, StateError> {
        let sql = format!("{} WHERE id = ?1", *SELECT);
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id], node_from_row)
            .optional()?)
    }

    /// Several nodes by id, in id order (unknown ids are skipped).
    pub fn nodes_by_ids(&self, ids: &[&str]) -> Result<Vec<Node>, StateError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.node(id)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Every node, in id order (`nodepool list`).
    pub fn nodes(&self) -> Result<Vec<Node>, StateError> {
        self.query_nodes("ORDER BY id", [])
    }

    /// All nodes of a provider, in id order.
    pub fn nodes_of_provider(&self, provider: &str) -> Result<Vec<Node>, StateError> {
        self.query_nodes("WHERE provider = ?1 ORDER BY id", params![provider])
    }

    /// The planner's view of all nodes of a provider, in id order: [`NodeSummary`] rows from
    /// a covering index, several times faster than [`Reader::nodes_of_provider`] at scale.
    pub fn node_summaries_of_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<NodeSummary>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM nodes WHERE provider = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![provider], summary_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Nodes in `state`, in id order.
    pub fn nodes_in_state(&self, state: NodeState) -> Result<Vec<Node>, StateError> {
        self.query_nodes("WHERE state = ?1 ORDER BY label, id", params![state])
    }

    /// Ready nodes of one label, oldest first (the order they are handed out in).
    pub fn ready_nodes(&self, label: &str) -> Result<Vec<Node>, StateError> {
        self.query_nodes(
            "WHERE state = ?1 AND label = ?2 ORDER BY id",
            params![NodeState::Ready, label],
        )
    }

    /// Ready-node counts per label, label order (unallocated and allocated together).
    pub fn ready_counts_by_label(&self) -> Result<Vec<(String, u64)>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT label, COUNT(*) FROM nodes WHERE state = ?1 GROUP BY label ORDER BY label",
        )?;
        let rows = stmt.query_map(params![NodeState::Ready], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)?.unsigned_abs()))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many nodes each (provider, label, state) has (combinations with none are omitted):
    /// one grouped query, for gauges, instead of reading every row.
    pub fn node_counts(&self) -> Result<Vec<NodeCount>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT provider, label, state, COUNT(*) FROM nodes \
             GROUP BY provider, label, state ORDER BY provider, label, state",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeCount {
                provider: r.get(0)?,
                label: r.get(1)?,
                state: r.get(2)?,
                count: r.get::<_, i64>(3)?.unsigned_abs(),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many nodes are in each state (states with no node are omitted), state order.
    pub fn node_counts_by_state(&self) -> Result<Vec<StateCount>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM nodes GROUP BY state")?;
        let rows = stmt.query_map([], |r| {
            Ok(StateCount {
                state: r.get(0)?,
                count: r.get::<_, i64>(1)?.unsigned_abs(),
            })
        })?;
        let mut counts = rows.collect::<Result<Vec<_>, _>>()?;
        counts.sort_by_key(|c| c.state);
        Ok(counts)
    }

    /// Nodes allocated to a request.
    pub fn nodes_of_request(&self, request_id: &str) -> Result<Vec<Node>, StateError> {
        self.query_nodes(
            "WHERE allocated_request = ?1 ORDER BY id",
            params![request_id],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;
    use proptest::prelude::*;

    /// Upstream's transitions, written out as a table independent of the `matches!`.
    const UPSTREAM: &[(NodeState, NodeState)] = {
        use NodeState::*;
        &[
            (Init, Building),
            (Init, Failed),
            (Init, Deleting),
            (Building, Ready),
            (Building, Failed),
            (Building, Deleting),
            (Ready, InUse),
            (Ready, Hold),
            (Ready, Deleting),
            (InUse, Used),
            (InUse, Hold),
            (InUse, Deleting),
            (Used, Deleting),
            (Hold, Used),
            (Hold, Deleting),
            (Failed, Deleting),
        ]
    };

    fn any_state() -> impl Strategy<Value = NodeState> {
        proptest::sample::select(NodeState::ALL)
    }

    #[test]
    fn names_round_trip() {
        for s in NodeState::ALL {
            assert_eq!(s.as_str().parse::<NodeState>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        assert!("in_use".parse::<NodeState>().is_err());
    }

    #[test]
    fn every_state_has_a_way_out_except_deleting_removal() {
        for s in NodeState::ALL {
            let exits = NodeState::ALL
                .iter()
                .filter(|t| s.can_transition_to(**t))
                .count();
            if *s == NodeState::Deleting {
                assert_eq!(exits, 0);
                assert!(s.is_removable());
            } else {
                assert!(exits > 0, "{s} is a dead end");
            }
        }
    }

    proptest! {
        #[test]
        fn only_upstream_transitions_are_accepted(from in any_state(), to in any_state()) {
            prop_assert_eq!(from.can_transition_to(to), UPSTREAM.contains(&(from, to)));
        }

        /// Random transition attempts against a real store: legal ones succeed, illegal ones
        /// fail and change nothing, and the stored state always equals the model's.
        #[test]
        fn random_sequences_stay_legal(
            start_building in any::<bool>(),
            steps in proptest::collection::vec(any_state(), 1..40),
        ) {
            let mut store = Store::open_in_memory().unwrap();
            let mut new = NewNode::new("p", "main", "ubuntu");
            new.state = if start_building { NodeState::Building } else { NodeState::Init };
            let id = store.insert_node(&new).unwrap().id;
            let mut model = new.state;
            for to in steps {
                let result = store.set_node_state(&id, to);
                if model.can_transition_to(to) {
                    prop_assert!(UPSTREAM.contains(&(model, to)));
                    prop_assert_eq!(result.unwrap().state, to);
                    model = to;
                } else {
                    let is_illegal = matches!(result, Err(StateError::IllegalTransition { .. }));
                    prop_assert!(is_illegal);
                }
                let stored = store.read().node(&id).unwrap().unwrap().state;
                prop_assert_eq!(stored, model);
            }
            // Removal only from deleting.
            let removed = store.write(|w| w.remove_node(&id));
            prop_assert_eq!(removed.is_ok(), model == NodeState::Deleting);
        }
    }

    #[test]
    fn insert_defaults_and_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        let mut new = NewNode::new("rax-dfw", "main", "ubuntu-noble");
        new.details = NodeDetails {
            server_id: Some("5c1e7f5a-uuid".into()),
            public_ipv4: Some("203.0.113.7".into()),
            public_ipv6: Some("2001:db8::7".into()),
            interface_ip: Some("203.0.113.7".into()),
            launch_attempts: 2,
            host_keys: vec!["ssh-ed25519 AAAAC3Nz".into()],
            connection_port: Some(22),
            cores: Some(8),
            ram: Some(8192),
            instances: Some(1),
            hold_expiration: Some(86_400),
            ..NodeDetails::default()
        };
        let a = store.insert_node(&new).unwrap();
        let b = store
            .insert_node(&NewNode::new("rax-dfw", "main", "ubuntu-noble"))
            .unwrap();
        assert_eq!(a.id, "0000000001");
        assert_eq!(b.id, "0000000002");
        assert_eq!(a.hostname, "np0000000001");
        assert_eq!(a.state, NodeState::Init);
        assert_eq!(store.read().node(&a.id).unwrap().unwrap(), a);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["state"], "init");
        assert_eq!(json["server_id"], "5c1e7f5a-uuid");
        assert_eq!(json["host_keys"][0], "ssh-ed25519 AAAAC3Nz");

        let mut ready = NewNode::new("p", "main", "l");
        ready.state = NodeState::Ready;
        assert!(matches!(
            store.insert_node(&ready),
            Err(StateError::Invalid(_))
        ));
    }

    #[test]
    fn update_changes_details_not_state() {
        let mut store = Store::open_in_memory().unwrap();
        let n = store.insert_node(&NewNode::new("p", "main", "l")).unwrap();
        let updated = store
            .write(|w| {
                w.update_node(&n.id, |d| {
                    d.server_id = Some("srv".into());
                    d.last_error = Some("quota exceeded".into());
                })
            })
            .unwrap();
        assert_eq!(updated.state, NodeState::Init);
        let stored = store.read().node(&n.id).unwrap().unwrap();
        assert_eq!(stored.details.server_id.as_deref(), Some("srv"));
        assert_eq!(stored.details.last_error.as_deref(), Some("quota exceeded"));
        assert!(matches!(
            store.write(|w| w.update_node("0000009999", |_| {})),
            Err(StateError::NotFound { .. })
        ));
    }

    #[test]
    fn queries() {
        let mut store = Store::open_in_memory().unwrap();
        let mut ids = Vec::new();
        for (provider, label) in [("a", "x"), ("a", "y"), ("b", "x"), ("b", "x"), ("a", "x")] {
            let mut new = NewNode::new(provider, "main", label);
            new.state = NodeState::Building;
            ids.push(store.insert_node(&new).unwrap().id);
        }
        for id in &ids[..4] {
            store.set_node_state(id, NodeState::Ready).unwrap();
        }
        store.set_node_state(&ids[3], NodeState::InUse).unwrap();
        let r = store.read();
        let of_a: Vec<_> = r
            .nodes_of_provider("a")
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(of_a, vec![ids[0].clone(), ids[1].clone(), ids[4].clone()]);
        let ready_x: Vec<_> = r
            .ready_nodes("x")
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ready_x, vec![ids[0].clone(), ids[2].clone()]);
        assert_eq!(
            r.ready_counts_by_label().unwrap(),
            vec![("x".to_string(), 2), ("y".to_string(), 1)]
        );
        assert_eq!(
            r.node_counts_by_state().unwrap(),
            vec![
                StateCount {
                    state: NodeState::Building,
                    count: 1
                },
                StateCount {
                    state: NodeState::Ready,
                    count: 3
                },
                StateCount {
                    state: NodeState::InUse,
                    count: 1
                },
            ]
        );
        let some = r.nodes_by_ids(&[&ids[2], "nope", &ids[0]]).unwrap();
        assert_eq!(
            some.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            [&ids[0], &ids[2]]
        );
        assert_eq!(r.nodes_in_state(NodeState::InUse).unwrap().len(), 1);
        assert_eq!(r.nodes().unwrap().len(), 5);
    }

    #[test]
    fn summaries_match_full_rows() {
        let mut store = Store::open_in_memory().unwrap();
        for i in 0..5u32 {
            let mut new = NewNode::new(if i % 2 == 0 { "a" } else { "b" }, "main", "l");
            new.details.cores = Some(i);
            new.details.upload_id = Some(format!("{i:010}"));
            store.insert_node(&new).unwrap();
        }
        let r = store.read();
        let full = r.nodes_of_provider("a").unwrap();
        let summaries = r.node_summaries_of_provider("a").unwrap();
        assert_eq!(full.len(), 3);
        for (n, s) in full.iter().zip(&summaries) {
            assert_eq!(
                (
                    &n.id,
                    &n.hostname,
                    n.state,
                    n.details.cores,
                    &n.details.upload_id
                ),
                (&s.id, &s.hostname, s.state, s.cores, &s.upload_id)
            );
        }
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {SUMMARY_COLUMNS} FROM nodes WHERE provider = 'a' ORDER BY id"
        );
        let plan: String = store.conn.query_row(&sql, [], |r| r.get(3)).unwrap();
        assert!(plan.contains("COVERING INDEX nodes_by_provider"), "{plan}");
    }

    #[test]
    fn the_planner_queries_use_indexes() {
        let store = Store::open_in_memory().unwrap();
        for (sql, index) in [
            (
                "SELECT id FROM nodes WHERE provider = 'a' ORDER BY id",
                "nodes_by_provider",
            ),
            (
                "SELECT id FROM nodes WHERE state = 'ready' AND label = 'x' ORDER BY id",
                "nodes_by_state_label",
            ),
        ] {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(plan.iter().any(|p| p.contains(index)), "{sql}: {plan:?}");
            assert!(
                !plan.iter().any(|p| p.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }
}
