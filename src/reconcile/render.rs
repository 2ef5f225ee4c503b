//! Plans for people and programs: Terraform-style text (with the config diff) and versioned JSON.
//!
//! Invariant: the only module that formats a plan. Nothing rendered here can hold a secret:
//! plans are built from `Config` (whose secrets are `Secret`, never serialised) and observations.

use super::plan::{Action, Plan, Summary};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The version of the JSON plan document; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// A plan with what it was made from: the JSON form, and the content of a saved plan file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanDocument {
    pub format_version: u32,
    /// The config revision the plan was made from (e.g. `main@1a2b3c4`).
    pub config_revision: String,
    /// The database the plan was made against, and its serial at that time.
    pub lineage: String,
    pub serial: i64,
    /// When the plan was made (unix seconds).
    pub created_at: i64,
    /// Fingerprints of the observed objects the plan's actions touch (address → fingerprint).
    #[serde(default)]
    pub fingerprints: std::collections::BTreeMap<String, String>,
    pub summary: Summary,
    #[serde(flatten)]
    pub plan: Plan,
}

impl PlanDocument {
    /// A document for `plan`, made at `created_at` from `config_revision` against the database
    /// `lineage` at `serial`; its summary is the plan's. No fingerprints: see
    /// [`PlanDocument::with_fingerprints`].
    pub fn new(
        plan: Plan,
        config_revision: impl Into<String>,
        lineage: impl Into<String>,
        serial: i64,
        created_at: i64,
    ) -> Self {
        PlanDocument {
            format_version: FORMAT_VERSION,
            config_revision: config_revision.into(),
            lineage: lineage.into(),
            serial,
            created_at,
            fingerprints: Default::default(),
            summary: plan.summary(),
            plan,
        }
    }

    /// The same document, stamped with what its actions touch (for stale-plan checks).
    pub fn with_fingerprints(
        mut self,
        fingerprints: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.fingerprints = fingerprints;
        self
    }
}

/// A unified diff of the config file between the last applied revision and this one;
/// `None` when nothing changed.
pub fn config_diff(old_label: &str, old: &str, new_label: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let diff = similar::TextDiff::from_lines(old, new);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(old_label, new_label)
            .to_string(),
    )
}

/// The section an address belongs to: its provider, or `requests`.
fn section(address: &str) -> &str {
    let mut parts = address.split('.');
    match (parts.next(), parts.next()) {
        (Some("node" | "leak" | "provider" | "image_upload"), Some(p)) => p,
        (Some("image_build"), _) => "images",
        (Some("request"), _) => "requests",
        (Some("label"), _) => "labels",
        _ => "other",
    }
}

/// Terraform-style text: the config diff, the actions grouped by provider with a reason each,
/// notes, and the `Plan:` summary line.
pub fn text(plan: &Plan, config_diff: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(d) = config_diff {
        s.push_str("Config changes since the last applied revision:\n\n");
        s.push_str(d);
        if !d.ends_with('\n') {
            s.push('\n');
        }
        s.push('\n');
    }
    if !plan.actions.is_empty() {
        s.push_str("Nodepool will perform the following actions:\n");
        let mut sections: Vec<&str> = plan.actions.iter().map(|a| section(&a.address)).collect();
        sections.sort();
        sections.dedup();
        for sec in sections {
            let _ = write!(s, "\n  # {sec}\n");
            for a in plan.actions.iter().filter(|a| section(&a.address) == sec) {
                action(&mut s, a);
            }
        }
        s.push('\n');
    }
    if !plan.notes.is_empty() {
        s.push_str("Notes:\n");
        for n in &plan.notes {
            let _ = writeln!(s, "  {}: {}", n.address, n.message);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "{}", plan.summary());
    s
}

fn action(s: &mut String, a: &Action) {
    let _ = writeln!(s, "  {:>3} {}", a.kind.change().symbol(), a.address);
    let _ = writeln!(s, "        reason: {}", a.reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_unified_with_headers() {
        let d = config_diff(
            "a/nodepool.yaml",
            "x: 1\ny: 2\n",
            "b/nodepool.yaml",
            "x: 1\ny: 3\n",
        )
        .unwrap();
        assert_eq!(
            d,
            "--- a/nodepool.yaml\n+++ b/nodepool.yaml\n@@ -1,2 +1,2 @@\n x: 1\n-y: 2\n+y: 3\n"
        );
        assert!(config_diff("a", "same\n", "b", "same\n").is_none());
    }

    #[test]
    fn empty_plan_says_no_changes() {
        assert_eq!(text(&Plan::default(), None), "No changes.\n");
    }

    #[test]
    fn sections() {
        assert_eq!(section("node.east.main.x[1]"), "east");
        assert_eq!(section("leak.west.port.abc"), "west");
        assert_eq!(section("request.0000000001"), "requests");
        assert_eq!(section("image_build.ubuntu[0000000002]"), "images");
        assert_eq!(section("image_upload.east.ubuntu"), "east");
    }
}
