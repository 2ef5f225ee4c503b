//! Tables for the operator commands (`list`, `request-list`, `image-list`, ...), with the
//! columns upstream Nodepool's commands have, ages human-readable.
//!
//! Invariant: formatting only; rows come from records the caller already read.

use crate::state::{ImageBuild, ImageUpload, Node, NodeRequest, age_since};
use comfy_table::{ContentArrangement, Table, presets::ASCII_FULL_CONDENSED};
use std::collections::BTreeMap;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(ASCII_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// `nodepool list`: nodes, with what their cloud says of each server (`cloud` maps a server
/// id to its status; a provider that could not be listed shows `?`).
pub fn nodes(
    nodes: &[Node],
    cloud: &BTreeMap<String, Option<BTreeMap<String, String>>>,
    now: i64,
    detail: bool,
) -> String {
    let mut header = vec![
        "ID",
        "Provider",
        "Label",
        "Server ID",
        "Public IPv4",
        "IPv6",
        "State",
        "Age",
        "Cloud",
    ];
    if detail {
        header.extend([
            "Pool",
            "Hostname",
            "Private IPv4",
            "AZ",
            "Connection",
            "Image",
            "Flavor",
            "Request",
            "Attempts",
            "Hold",
            "Last error",
        ]);
    }
    let mut t = table(&header);
    for n in nodes {
        let in_cloud = match cloud.get(&n.provider) {
            Some(Some(servers)) => match n.details.server_id.as_deref() {
                Some(sid) => servers
                    .get(sid)
                    .cloned()
                    .unwrap_or_else(|| "missing".into()),
                None => "-".into(),
            },
            _ => "?".into(),
        };
        let mut row = vec![
            n.id.clone(),
            n.provider.clone(),
            n.label.clone(),
            opt(&n.details.server_id),
            opt(&n.details.public_ipv4),
            opt(&n.details.public_ipv6),
            n.state.to_string(),
            age_since(n.state_time, now),
            in_cloud,
        ];
        if detail {
            let d = &n.details;
            row.extend([
                n.pool.clone(),
                n.hostname.clone(),
                opt(&d.private_ipv4),
                opt(&d.az),
                format!(
                    "{}:{}",
                    d.connection_type.clone().unwrap_or_default(),
                    d.connection_port.map(|p| p.to_string()).unwrap_or_default()
                ),
                opt(&d.image_name),
                opt(&d.flavor),
                opt(&d.allocated_request),
                d.launch_attempts.to_string(),
                opt(&d.hold_reason),
                opt(&d.last_error),
            ]);
        }
        t.add_row(row);
    }
    t.to_string()
}

/// `nodepool request-list`.
pub fn requests(reqs: &[NodeRequest], now: i64) -> String {
    let mut t = table(&[
        "Request ID",
        "State",
        "Requestor",
        "Labels",
        "Nodes",
        "Priority",
        "Tenant",
        "Age",
        "Declined",
    ]);
    for r in reqs {
        t.add_row(vec![
            r.id.clone(),
            r.state.to_string(),
            r.requestor.clone(),
            r.labels.join(","),
            r.nodes.join(","),
            r.priority.to_string(),
            opt(&r.tenant),
            age_since(r.created_at, now),
            opt(&r.declined_reason),
        ]);
    }
    t.to_string()
}

/// `nodepool image-list`: uploads.
pub fn uploads(ups: &[ImageUpload], now: i64) -> String {
    let mut t = table(&[
        "Build ID",
        "Upload ID",
        "Provider",
        "Image",
        "Provider Image Name",
        "Provider Image ID",
        "State",
        "Age",
    ]);
    for u in ups {
        t.add_row(vec![
            opt(&u.build_id),
            u.id.clone(),
            u.provider.clone(),
            u.image_name.clone(),
            u.details.external_name.clone(),
            opt(&u.details.external_id),
            u.state.to_string(),
            age_since(u.state_time, now),
        ]);
    }
    t.to_string()
}

/// `nodepool dib-image-list`: builds.
pub fn builds(builds: &[ImageBuild], now: i64) -> String {
    let mut t = table(&[
        "ID",
        "Image",
        "Builder",
        "Formats",
        "State",
        "Age",
        "Exit code",
    ]);
    for b in builds {
        t.add_row(vec![
            b.id.clone(),
            b.image_name.clone(),
            opt(&b.builder),
            b.formats
                .iter()
                .map(|f| {
                    if b.has_file(f) {
                        f.clone()
                    } else {
                        format!("{f} (removed)")
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
            b.state.to_string(),
            age_since(b.state_time, now),
            b.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ]);
    }
    t.to_string()
}

/// `nodepool alien-image-list`: images that look like ours but that no upload record owns.
pub fn alien_images(rows: &[(String, String, String)]) -> String {
    let mut t = table(&["Provider", "Name", "Image ID"]);
    for (p, name, id) in rows {
        t.add_row(vec![p.clone(), name.clone(), id.clone()]);
    }
    t.to_string()
}

/// `nodepool image-adopt`: the cloud images taken over (or that would be, on a dry run).
pub fn adoptions(rows: &[crate::ops::images::Adoption]) -> String {
    let mut t = table(&[
        "Provider",
        "Image",
        "Name",
        "Image ID",
        "Upstream Build",
        "Upstream Upload",
        "Age",
        "Upload ID",
    ]);
    let now = crate::state::now_unix();
    for a in rows {
        t.add_row(vec![
            a.provider.clone(),
            a.image.clone(),
            a.external_name.clone(),
            a.external_id.clone(),
            a.upstream_build_id.clone().unwrap_or_default(),
            a.upstream_upload_id.clone().unwrap_or_default(),
            crate::state::format_age((now - a.created_at).max(0)),
            a.upload_id.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.to_string()
}

/// `nodepool doctor`: one provider's report as text.
pub fn doctor(provider: &str, r: &crate::cloud::doctor::DoctorReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verdict = match r.verdict {
        crate::cloud::doctor::Verdict::Ok => "OK",
        crate::cloud::doctor::Verdict::Degraded => "DEGRADED",
        crate::cloud::doctor::Verdict::Failed => "FAILED",
    };
    let _ = writeln!(s, "provider {provider}: {verdict}");
    let _ = writeln!(s, "  {}", r.explanation);
    let _ = writeln!(
        s,
        "  credentials: {} at {} (user {}, project {}, region {})",
        r.provider,
        r.auth_url,
        r.user.as_deref().unwrap_or("-"),
        r.project.as_deref().unwrap_or("-"),
        r.region.as_deref().unwrap_or("-")
    );
    let mut t = table(&["Check", "Call", "Result", "Latency", "Detail"]);
    for c in &r.checks {
        t.add_row(vec![
            c.name.to_owned(),
            c.call.to_owned(),
            if c.ok { "ok" } else { "FAILED" }.to_owned(),
            format!("{} ms", c.latency_ms),
            c.detail.clone(),
        ]);
    }
    let _ = writeln!(s, "{t}");
    if let Some(q) = &r.quota {
        let f = |q: &crate::cloud::Quota| {
            format!(
                "{} of {}",
                q.used,
                q.limit
                    .map_or_else(|| "unlimited".to_owned(), |l| l.to_string())
            )
        };
        let _ = writeln!(
            s,
            "  quota: instances {}, cores {}, ram {} MB",
            f(&q.instances),
            f(&q.cores),
            f(&q.ram_mb)
        );
    }
    let c = &r.counts;
    let n = |v: Option<usize>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let _ = writeln!(
        s,
        "  servers {} ({} with nodepool metadata, {} in ERROR), floating IPs {} ({} unattached), DOWN ports {}, images {}",
        n(c.servers),
        n(c.nodepool_servers),
        n(c.error_servers),
        n(c.floating_ips),
        n(c.unattached_floating_ips),
        n(c.down_ports),
        n(c.images)
    );
    for note in &r.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    s
}
