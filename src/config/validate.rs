//! Semantic checks the schema cannot express: references between sections, uniqueness, cycles.
//!
//! Every check reports all problems at once, each with the JSON pointer of the offending key so
//! the caller can attach the file's line and column.

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::{NodepoolFile, ProviderEntry, SecureFile};
use super::yaml::PositionIndex;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Collects diagnostics for one file.
pub(super) struct Report<'a> {
    file: &'a Path,
    index: &'a PositionIndex,
    pub out: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(file: &'a Path, index: &'a PositionIndex) -> Self {
        Report {
            file,
            index,
            out: Vec::new(),
        }
    }
    fn error(&mut self, pointer: String, message: String, hint: Option<String>) {
        let d = Diagnostic::error(self.file, self.index.value_pos(&pointer), &pointer, message);
        self.out.push(d.with_hint(hint));
    }
    fn warning(&mut self, pointer: String, message: String) {
        self.out.push(Diagnostic::warning(
            self.file,
            self.index.value_pos(&pointer),
            &pointer,
            message,
        ));
    }
    /// Report every name that appears twice in `names` (pointer of the repeat).
    fn unique<'n>(&mut self, what: &str, base: &str, names: impl Iterator<Item = &'n str>) {
        let mut seen = HashMap::new();
        for (i, name) in names.enumerate() {
            if let Some(first) = seen.insert(name, i) {
                self.error(
                    format!("{base}/{i}/name"),
                    format!(
                        "duplicate {what} name `{name}` (first defined at {base}[{first}])",
                        base = super::diagnostic::display_path(base)
                    ),
                    None,
                );
            }
        }
    }
}

pub(super) fn check(file: &NodepoolFile, r: &mut Report<'_>) {
    r.unique(
        "label",
        "/labels",
        file.labels.iter().map(|l| l.name.as_str()),
    );
    r.unique(
        "diskimage",
        "/diskimages",
        file.diskimages.iter().map(|d| d.name.as_str()),
    );
    r.unique(
        "provider",
        "/providers",
        file.providers.iter().map(|p| match p {
            ProviderEntry::OpenStack(p) => p.name.as_str(),
            ProviderEntry::Other(o) => o.name.as_str(),
        }),
    );
    check_diskimage_parents(file, r);

    let labels: HashSet<&str> = file.labels.iter().map(|l| l.name.as_str()).collect();
    let diskimages: HashMap<&str, bool> = file
        .diskimages
        .iter()
        .map(|d| (d.name.as_str(), d.r#abstract.unwrap_or(false)))
        .collect();
    let mut offered: HashSet<&str> = HashSet::new();

    for (pi, entry) in file.providers.iter().enumerate() {
        let base = format!("/providers/{pi}");
        let p = match entry {
            ProviderEntry::OpenStack(p) => p,
            ProviderEntry::Other(o) => {
                r.warning(
                    format!("{base}/driver"),
                    format!(
                        "provider `{}` uses driver `{}`, which is not supported by this version; it is ignored",
                        o.name, o.driver
                    ),
                );
                continue;
            }
        };
        check_credentials(p, &base, r);
        if p.rate < 0.0 || !p.rate.is_finite() {
            r.error(
                format!("{base}/rate"),
                "must be a non-negative number of seconds".into(),
                None,
            );
        }
        r.unique(
            "provider diskimage",
            &format!("{base}/diskimages"),
            p.diskimages.iter().map(|d| d.name.as_str()),
        );
        r.unique(
            "cloud-image",
            &format!("{base}/cloud-images"),
            p.cloud_images.iter().map(|d| d.name.as_str()),
        );
        r.unique(
            "pool",
            &format!("{base}/pools"),
            p.pools.iter().map(|d| d.name.as_str()),
        );
        for (di, d) in p.diskimages.iter().enumerate() {
            let ptr = format!("{base}/diskimages/{di}/name");
            match diskimages.get(d.name.as_str()) {
                None => r.error(
                    ptr,
                    format!(
                        "diskimage `{}` is not defined in the top-level `diskimages`",
                        d.name
                    ),
                    did_you_mean(&d.name, diskimages.keys().copied()),
                ),
                Some(true) => r.error(
                    ptr,
                    format!(
                        "diskimage `{}` is abstract: it is never built, so it cannot be uploaded",
                        d.name
                    ),
                    None,
                ),
                Some(false) => {}
            }
            if d.meta.len() > 5 || d.meta.iter().any(|(k, v)| k.len() > 255 || v.0.len() > 255) {
                r.warning(
                    format!("{base}/diskimages/{di}/meta"),
                    "image metadata is limited to 5 entries of at most 255 characters each; as upstream, it is ignored".into(),
                );
            }
        }
        for (ci, c) in p.cloud_images.iter().enumerate() {
            if c.image_id.is_some() && c.image_name.is_some() {
                r.error(
                    format!("{base}/cloud-images/{ci}/image-name"),
                    "`image-id` and `image-name` are mutually exclusive".into(),
                    None,
                );
            }
        }
        let provider_images: HashSet<&str> = p.diskimages.iter().map(|d| d.name.as_str()).collect();
        let cloud_images: HashSet<&str> = p.cloud_images.iter().map(|d| d.name.as_str()).collect();
        for (oi, pool) in p.pools.iter().enumerate() {
            let pbase = format!("{base}/pools/{oi}");
            r.unique(
                "pool label",
                &format!("{pbase}/labels"),
                pool.labels.iter().map(|l| l.name.as_str()),
            );
            for (li, l) in pool.labels.iter().enumerate() {
                let lbase = format!("{pbase}/labels/{li}");
                offered.insert(l.name.as_str());
                if !labels.contains(l.name.as_str()) {
                    r.error(
                        format!("{lbase}/name"),
                        format!(
                            "label `{}` is not defined in the top-level `labels`",
                            l.name
                        ),
                        did_you_mean(&l.name, labels.iter().copied()),
                    );
                }
                match (&l.diskimage, &l.cloud_image) {
                    (Some(_), Some(_)) => r.error(
                        format!("{lbase}/cloud-image"),
                        "`diskimage` and `cloud-image` are mutually exclusive".into(),
                        None,
                    ),
                    (None, None) => r.error(
                        lbase.clone(),
                        format!(
                            "label `{}` needs either `diskimage` or `cloud-image`",
                            l.name
                        ),
                        None,
                    ),
                    (Some(d), None) if !provider_images.contains(d.as_str()) => r.error(
                        format!("{lbase}/diskimage"),
                        format!("diskimage `{d}` is not listed in this provider's `diskimages`"),
                        did_you_mean(d, provider_images.iter().copied()),
                    ),
                    (None, Some(c)) if !cloud_images.contains(c.as_str()) => r.error(
                        format!("{lbase}/cloud-image"),
                        format!(
                            "cloud-image `{c}` is not listed in this provider's `cloud-images`"
                        ),
                        did_you_mean(c, cloud_images.iter().copied()),
                    ),
                    _ => {}
                }
                if l.flavor_name.is_none() && l.min_ram.is_none() {
                    r.error(
                        lbase.clone(),
                        format!(
                            "label `{}` needs a flavor: `flavor-name`, `min-ram` or both",
                            l.name
                        ),
                        None,
                    );
                }
            }
        }
    }

    for (i, l) in file.labels.iter().enumerate() {
        if l.min_ready > 0 && !offered.contains(l.name.as_str()) {
            let offered_elsewhere = file
                .providers
                .iter()
                .any(|p| matches!(p, ProviderEntry::Other(_)));
            if !offered_elsewhere {
                r.warning(
                    format!("/labels/{i}/min-ready"),
                    format!(
                        "label `{}` has min-ready {} but no pool offers it",
                        l.name, l.min_ready
                    ),
                );
            }
        }
    }
}

fn check_credentials(p: &super::model::OpenStackProvider, base: &str, r: &mut Report<'_>) {
    match (&p.cloud, &p.auth_url) {
        (Some(_), Some(_)) => r.error(
            format!("{base}/auth-url"),
            "give either `cloud` (a clouds.yaml entry) or the inline `auth-url` form, not both"
                .into(),
            None,
        ),
        // Upstream's in-tree fake driver needs no cloud account.
        (None, None) if p.driver == "fake" => {}
        (None, None) => r.error(
            base.to_owned(),
            format!(
                "provider `{}` needs `cloud` (the name of a clouds.yaml entry)",
                p.name
            ),
            None,
        ),
        (None, Some(_)) => {
            if p.username.is_none() {
                r.error(
                    format!("{base}/auth-url"),
                    "the inline credential form needs `username`".into(),
                    None,
                );
            }
            if p.project_id.is_none() && p.project_name.is_none() {
                r.error(
                    format!("{base}/auth-url"),
                    "the inline credential form needs `project-name` or `project-id`".into(),
                    None,
                );
            }
        }
        (Some(_), None) => {}
    }
}

fn check_diskimage_parents(file: &NodepoolFile, r: &mut Report<'_>) {
    let by_name: HashMap<&str, usize> = file
        .diskimages
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    for (i, d) in file.diskimages.iter().enumerate() {
        let Some(parent) = d.parent.as_deref() else {
            continue;
        };
        if !by_name.contains_key(parent) {
            r.error(
                format!("/diskimages/{i}/parent"),
                format!("parent diskimage `{parent}` is not defined"),
                did_you_mean(parent, by_name.keys().copied()),
            );
            continue;
        }
        // Walk up; a walk that comes back to `d` is a cycle (reported once per member).
        let mut seen = vec![d.name.as_str()];
        let mut cur = parent;
        while let Some(&j) = by_name.get(cur) {
            if seen.contains(&cur) {
                if cur == d.name {
                    seen.push(cur);
                    r.error(
                        format!("/diskimages/{i}/parent"),
                        format!("diskimage parents form a cycle: {}", seen.join(" → ")),
                        None,
                    );
                }
                break;
            }
            seen.push(cur);
            match file.diskimages[j].parent.as_deref() {
                Some(next) => cur = next,
                None => break,
            }
        }
    }
}

pub(super) fn check_secure(secure: &SecureFile, file: &NodepoolFile, r: &mut Report<'_>) {
    let names: HashSet<&str> = file.diskimages.iter().map(|d| d.name.as_str()).collect();
    for (i, d) in secure.diskimages.iter().enumerate() {
        if !names.contains(d.name.as_str()) {
            r.error(
                format!("/diskimages/{i}/name"),
                format!("diskimage `{}` is not defined in the config", d.name),
                did_you_mean(&d.name, names.iter().copied()),
            );
        }
    }
    let providers: HashSet<&str> = file
        .providers
        .iter()
        .filter_map(|p| match p {
            ProviderEntry::OpenStack(p) => Some(p.name.as_str()),
            ProviderEntry::Other(_) => None,
        })
        .collect();
    for (i, p) in secure.providers.iter().enumerate() {
        if !providers.contains(p.name.as_str()) {
            r.error(
                format!("/providers/{i}/name"),
                format!(
                    "provider `{}` is not an OpenStack provider of the config",
                    p.name
                ),
                did_you_mean(&p.name, providers.iter().copied()),
            );
        }
    }
}
