//! The resolved desired state the rest of the program reads: defaults applied, parents flattened.

use super::model::{
    DiskImageSpec, Label, NodepoolFile, OpenStackProvider, OtherProvider, ProviderEntry,
    SecureFile, TenantResourceLimit, Webapp, ZookeeperServer, ZookeeperTls,
};
use crate::secret::Secret;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

/// The validated, resolved config. Built only by [`super::load`]; never holds an invalid value.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub labels: Vec<Label>,
    /// OpenStack providers, in file order.
    pub providers: Vec<OpenStackProvider>,
    /// Providers of drivers this version does not implement (ignored, with a warning).
    pub ignored_providers: Vec<OtherProvider>,
    /// Every diskimage, abstract ones included, with `parent` chains flattened.
    pub diskimages: Vec<DiskImage>,
    pub webapp: Webapp,
    pub elements_dir: Option<String>,
    pub images_dir: Option<String>,
    pub build_log_dir: Option<String>,
    pub build_log_retention: i64,
    pub max_hold_age: Option<u64>,
    pub tenant_resource_limits: Vec<TenantResourceLimit>,
    pub zookeeper_servers: Vec<ZookeeperServer>,
    pub zookeeper_tls: Option<ZookeeperTls>,
    pub zookeeper_timeout: Option<f64>,
}

/// A diskimage with its parent chain applied and defaults filled in.
#[derive(Clone, Debug, Serialize)]
pub struct DiskImage {
    pub name: String,
    pub r#abstract: bool,
    pub parent: Option<String>,
    pub elements: Vec<String>,
    /// Public environment for the build (from the config repo).
    pub env_vars: IndexMap<String, String>,
    /// Environment from the secure file: never shown.
    #[serde(skip)]
    pub secure_env_vars: IndexMap<String, Secret>,
    pub formats: Vec<String>,
    pub keep_formats: Vec<String>,
    pub delete_after_upload: bool,
    pub release: Option<String>,
    pub rebuild_age: u64,
    pub build_timeout: u64,
    pub dib_cmd: String,
    pub pause: bool,
    pub username: String,
    pub python_path: String,
    pub shell_type: Option<String>,
    pub metadata: IndexMap<String, Value>,
}

impl Config {
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.name == name)
    }
    pub fn provider(&self, name: &str) -> Option<&OpenStackProvider> {
        self.providers.iter().find(|p| p.name == name)
    }
    pub fn diskimage(&self, name: &str) -> Option<&DiskImage> {
        self.diskimages.iter().find(|d| d.name == name)
    }
}

/// Build the resolved config. The caller has validated `file` (names unique, parents exist,
/// no cycles), so lookups here cannot fail; a missing parent is simply not applied.
pub(super) fn resolve(file: NodepoolFile, secure: SecureFile) -> Config {
    let mut providers = Vec::new();
    let mut ignored = Vec::new();
    for entry in file.providers {
        match entry {
            ProviderEntry::OpenStack(p) => providers.push(*p),
            ProviderEntry::Other(o) => ignored.push(o),
        }
    }
    let mut diskimages: Vec<DiskImage> = file
        .diskimages
        .iter()
        .map(|d| flatten(d, &file.diskimages))
        .collect();
    for s in &secure.diskimages {
        if let Some(d) = diskimages.iter_mut().find(|d| d.name == s.name) {
            for (k, v) in &s.env_vars {
                d.env_vars.shift_remove(k);
                d.secure_env_vars
                    .insert(k.clone(), Secret::new(v.0.clone()));
            }
        }
    }
    for sp in &secure.providers {
        if let Some(p) = providers.iter_mut().find(|p| p.name == sp.name) {
            p.password = Some(sp.password.clone());
        }
    }
    Config {
        labels: file.labels,
        providers,
        ignored_providers: ignored,
        diskimages,
        webapp: file.webapp.unwrap_or(Webapp {
            port: 8005,
            listen_address: "0.0.0.0".into(),
        }),
        elements_dir: file.elements_dir,
        images_dir: file.images_dir,
        build_log_dir: file.build_log_dir,
        build_log_retention: file.build_log_retention.unwrap_or(7),
        max_hold_age: file.max_hold_age.filter(|a| *a > 0),
        tenant_resource_limits: file.tenant_resource_limits,
        zookeeper_servers: if secure.zookeeper_servers.is_empty() {
            file.zookeeper_servers
        } else {
            secure.zookeeper_servers
        },
        zookeeper_tls: secure.zookeeper_tls.or(file.zookeeper_tls),
        zookeeper_timeout: secure.zookeeper_timeout.or(file.zookeeper_timeout),
    }
}

/// The chain from the root ancestor down to `spec` itself (cycles were rejected earlier; the
/// walk stops at a repeat anyway, so it always terminates).
fn chain<'a>(spec: &'a DiskImageSpec, all: &'a [DiskImageSpec]) -> Vec<&'a DiskImageSpec> {
    let mut out = vec![spec];
    let mut cur = spec;
    while let Some(parent) = cur.parent.as_deref() {
        match all.iter().find(|d| d.name == parent) {
            Some(p) if !out.iter().any(|x| x.name == p.name) => {
                out.push(p);
                cur = p;
            }
            _ => break,
        }
    }
    out.reverse();
    out
}

fn flatten(spec: &DiskImageSpec, all: &[DiskImageSpec]) -> DiskImage {
    let mut elements = Vec::new();
    let mut env_vars = IndexMap::new();
    let mut merged = DiskImageSpec::default();
    for d in chain(spec, all) {
        elements.extend(d.elements.iter().flatten().cloned());
        for (k, v) in d.env_vars.iter().flatten() {
            env_vars.insert(k.clone(), v.0.clone());
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if d.$f.is_some() { merged.$f = d.$f.clone(); } )* };
        }
        take!(
            formats,
            keep_formats,
            delete_after_upload,
            release,
            rebuild_age,
            build_timeout,
            dib_cmd,
            pause,
            username,
            python_path,
            shell_type,
            metadata
        );
    }
    DiskImage {
        name: spec.name.clone(),
        // `abstract` is never inherited: a child of a template is a real image.
        r#abstract: spec.r#abstract.unwrap_or(false),
        parent: spec.parent.clone(),
        elements,
        env_vars,
        secure_env_vars: IndexMap::new(),
        formats: merged.formats.unwrap_or_default(),
        keep_formats: merged.keep_formats.unwrap_or_default(),
        delete_after_upload: merged.delete_after_upload.unwrap_or(false),
        release: merged.release.map(|t| t.0),
        rebuild_age: merged.rebuild_age.unwrap_or(86400),
        build_timeout: merged.build_timeout.unwrap_or(28800),
        dib_cmd: merged.dib_cmd.unwrap_or_else(|| "disk-image-create".into()),
        pause: merged.pause.unwrap_or(false),
        username: merged.username.unwrap_or_else(|| "zuul".into()),
        python_path: merged.python_path.unwrap_or_else(|| "auto".into()),
        shell_type: merged.shell_type,
        metadata: merged.metadata.unwrap_or_default(),
    }
}
