//! Upstream's web listings (`/node-list`, `/image-list`, `/dib-image-list`, `/request-list`,
//! `/label-list`): the objects upstream Nodepool's webapp serves, with its keys, so dashboards
//! and scripts written against it keep working; the text is its table, `?fields=a,b` picks and
//! orders the columns as upstream does.
//!
//! Where this reconciler has no such thing the value says so plainly: `locked` is `locked` for
//! a node a requestor holds (in use, or allocated to a request) and `unlocked` otherwise (there
//! are no ZooKeeper locks), `launcher` is `null`, `declined_by` is empty. The full records are
//! the authenticated API's and `nodepool list --json`'s.
//!
//! Invariant: formatting only; rows come from records the caller already read.

use crate::state::{ImageBuild, ImagePause, ImageUpload, Node, NodeRequest, NodeState};
use serde_json::{Map, Value, json};

/// Rows of one listing with its columns: (key, header) in upstream's order.
pub struct Listing {
    columns: &'static [(&'static str, &'static str)],
    rows: Vec<Map<String, Value>>,
}

impl Listing {
    fn new(columns: &'static [(&'static str, &'static str)]) -> Listing {
        Listing {
            columns,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, values: Vec<Value>) {
        debug_assert_eq!(values.len(), self.columns.len());
        let row = self
            .columns
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .zip(values)
            .collect();
        self.rows.push(row);
    }

    /// The objects, as upstream's `Accept: application/json` gives them (every key; upstream
    /// applies `fields` to the table only).
    pub fn json(&self) -> Value {
        Value::Array(self.rows.iter().cloned().map(Value::Object).collect())
    }

    /// The table, with the `fields` columns only (in the listing's order) if given. `age`
    /// given as a time is shown as upstream does, `dd:hh:mm:ss` before `now`.
    pub fn text(&self, fields: Option<&[&str]>, now: i64) -> String {
        let columns: Vec<&(&str, &str)> = self
            .columns
            .iter()
            .filter(|(k, _)| fields.is_none_or(|f| f.contains(k)))
            .collect();
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::ASCII_FULL_CONDENSED)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(columns.iter().map(|(_, h)| *h));
        for row in &self.rows {
            t.add_row(columns.iter().map(|(k, _)| match (*k, &row[*k]) {
                ("age", Value::Number(n)) => dd_hh_mm_ss(now - n.as_i64().unwrap_or(now)),
                (_, v) => cell(v),
            }));
        }
        format!("{t}\n")
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Upstream's age: days, hours, minutes, seconds, two digits each.
fn dd_hh_mm_ss(seconds: i64) -> String {
    let s = seconds.max(0);
    format!(
        "{:02}:{:02}:{:02}:{:02}",
        s / 86_400,
        s % 86_400 / 3_600,
        s % 3_600 / 60,
        s % 60
    )
}

/// `/node-list` (`node_id`: that node only).
pub fn nodes(nodes: &[Node], node_id: Option<&str>, now: i64) -> Listing {
    const COLUMNS: &[(&str, &str)] = &[
        ("id", "ID"),
        ("provider", "Provider"),
        ("label", "Label"),
        ("server_id", "Server ID"),
        ("public_ipv4", "Public IPv4"),
        ("ipv6", "IPv6"),
        ("state", "State"),
        ("age", "Age"),
        ("locked", "Locked"),
        ("pool", "Pool"),
        ("hostname", "Hostname"),
        ("private_ipv4", "Private IPv4"),
        ("AZ", "AZ"),
        ("connection_port", "Port"),
        ("launcher", "Launcher"),
        ("allocated_to", "Allocated To"),
        ("hold_job", "Hold Job"),
        ("comment", "Comment"),
    ];
    let mut l = Listing::new(COLUMNS);
    for n in nodes.iter().filter(|n| node_id.is_none_or(|id| n.id == id)) {
        let d = &n.details;
        let held = n.state == NodeState::InUse || d.allocated_request.is_some();
        l.push(vec![
            json!(n.id),
            json!(n.provider),
            // Upstream's node type is a list of labels.
            json!([n.label]),
            json!(d.server_id),
            json!(d.public_ipv4),
            json!(d.public_ipv6),
            json!(n.state.to_string()),
            json!(dd_hh_mm_ss(now - n.state_time)),
            json!(if held { "locked" } else { "unlocked" }),
            json!(n.pool),
            json!(n.hostname),
            json!(d.private_ipv4),
            json!(d.az),
            json!(d.connection_port),
            Value::Null,
            json!(d.allocated_request),
            json!(d.hold_job),
            json!(d.comment.as_ref().or(d.hold_reason.as_ref())),
        ]);
    }
    l
}

/// `/image-list`: uploads; `age` is the state time (unix seconds) as upstream gives it.
pub fn uploads(uploads: &[ImageUpload]) -> Listing {
    const COLUMNS: &[(&str, &str)] = &[
        ("id", "Build ID"),
        ("upload_id", "Upload ID"),
        ("provider", "Provider"),
        ("image", "Image"),
        ("external_name", "Provider Image Name"),
        ("external_id", "Provider Image ID"),
        ("state", "State"),
        ("age", "Age"),
    ];
    let mut l = Listing::new(COLUMNS);
    for u in uploads {
        l.push(vec![
            json!(u.build_id),
            json!(u.id),
            json!(u.provider),
            json!(u.image_name),
            json!(u.details.external_name),
            json!(u.details.external_id),
            json!(u.state.to_string()),
            json!(u.state_time),
        ]);
    }
    l
}

/// `/dib-image-list`: builds, ids as upstream's `<image>-<build>`; a paused image's builds
/// read `paused`.
pub fn builds(builds: &[ImageBuild], pauses: &[ImagePause]) -> Listing {
    const COLUMNS: &[(&str, &str)] = &[
        ("id", "ID"),
        ("image", "Image"),
        ("builder", "Builder"),
        ("formats", "Formats"),
        ("state", "State"),
        ("age", "Age"),
    ];
    let mut l = Listing::new(COLUMNS);
    for b in builds {
        let paused = pauses.iter().any(|p| p.image_name == b.image_name);
        l.push(vec![
            json!(format!("{}-{}", b.image_name, b.id)),
            json!(b.image_name),
            json!(b.builder),
            json!(b.formats),
            json!(if paused {
                "paused".to_owned()
            } else {
                b.state.to_string()
            }),
            json!(b.state_time),
        ]);
    }
    l
}

/// `/request-list`.
pub fn requests(requests: &[NodeRequest]) -> Listing {
    const COLUMNS: &[(&str, &str)] = &[
        ("id", "Request ID"),
        ("relative_priority", "Priority"),
        ("state", "State"),
        ("requestor", "Requestor"),
        ("node_types", "Node Types"),
        ("nodes", "Nodes"),
        ("declined_by", "Declined By"),
        ("event_id", "Event ID"),
    ];
    let mut l = Listing::new(COLUMNS);
    for r in requests {
        l.push(vec![
            json!(r.id),
            json!(r.priority),
            json!(r.state.to_string()),
            json!(r.requestor),
            json!(r.labels),
            json!(r.nodes),
            json!([]),
            Value::Null,
        ]);
    }
    l
}

/// `/label-list`: the labels of the config in force as (name, min-ready, ready now); upstream
/// gives the name only, the other two are ours.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a str, u32, u64)>) -> Listing {
    const COLUMNS: &[(&str, &str)] = &[
        ("label", "Label"),
        ("min_ready", "Min Ready"),
        ("ready", "Ready"),
    ];
    let mut l = Listing::new(COLUMNS);
    for (name, min_ready, ready) in labels {
        l.push(vec![json!(name), json!(min_ready), json!(ready)]);
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeDetails;

    fn node(id: &str, state: NodeState) -> Node {
        Node {
            id: id.into(),
            provider: "east".into(),
            pool: "main".into(),
            label: "small".into(),
            hostname: format!("np{id}"),
            state,
            state_time: 1_000,
            created_at: 900,
            details: NodeDetails {
                server_id: Some(format!("srv-{id}")),
                public_ipv4: Some("203.0.113.5".into()),
                az: Some("nova".into()),
                connection_port: Some(22),
                ..NodeDetails::default()
            },
        }
    }

    #[test]
    fn node_objects_have_upstreams_keys_and_values() {
        let nodes = [
            node("0000000001", NodeState::Ready),
            node("0000000002", NodeState::InUse),
        ];
        let l = super::nodes(&nodes, None, 1_000 + 90_061);
        let v = l.json();
        let first = &v[0];
        let keys: Vec<&str> = first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "provider",
                "label",
                "server_id",
                "public_ipv4",
                "ipv6",
                "state",
                "age",
                "locked",
                "pool",
                "hostname",
                "private_ipv4",
                "AZ",
                "connection_port",
                "launcher",
                "allocated_to",
                "hold_job",
                "comment"
            ]
        );
        assert_eq!(first["label"], json!(["small"]));
        assert_eq!(first["age"], "01:01:01:01");
        assert_eq!(first["locked"], "unlocked");
        assert_eq!(v[1]["locked"], "locked");
        assert_eq!(v[1]["state"], "in-use");
        assert_eq!(first["AZ"], "nova");
        assert_eq!(first["connection_port"], 22);

        let one = super::nodes(&nodes, Some("0000000002"), 1_000).json();
        assert_eq!(one.as_array().unwrap().len(), 1);
        assert_eq!(one[0]["id"], "0000000002");
    }

    #[test]
    fn fields_pick_columns_in_the_listings_order() {
        let nodes = [node("0000000001", NodeState::Ready)];
        let text = super::nodes(&nodes, None, 1_000).text(Some(&["state", "id"]), 1_000);
        let header = text.lines().nth(1).unwrap();
        assert!(header.contains("ID") && header.contains("State"), "{text}");
        assert!(header.find("ID") < header.find("State"), "{text}");
        assert!(!text.contains("Provider"), "{text}");
        let all = super::nodes(&nodes, None, 1_000).text(None, 1_000);
        assert!(
            all.contains("Hold Job") && all.contains("203.0.113.5"),
            "{all}"
        );
    }

    #[test]
    fn image_ages_are_times_in_json_and_ages_in_text() {
        let b = ImageBuild {
            id: "0000000003".into(),
            image_name: "ubuntu".into(),
            state: crate::state::BuildState::Ready,
            state_time: 500,
            formats: vec!["qcow2".into(), "raw".into()],
            builder: Some("b1".into()),
            started_at: 400,
            finished_at: Some(500),
            exit_code: Some(0),
            log_path: None,
            size_bytes: None,
            pruned_formats: Vec::new(),
        };
        let l = super::builds(std::slice::from_ref(&b), &[]);
        assert_eq!(l.json()[0]["id"], "ubuntu-0000000003");
        assert_eq!(l.json()[0]["age"], 500);
        let text = l.text(None, 500 + 3_600);
        assert!(
            text.contains("00:01:00:00") && text.contains("qcow2,raw"),
            "{text}"
        );
        let paused = super::builds(
            &[b],
            &[ImagePause {
                image_name: "ubuntu".into(),
                paused_at: 0,
                reason: None,
            }],
        );
        assert_eq!(paused.json()[0]["state"], "paused");
    }
}
