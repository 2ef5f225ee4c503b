//! The shape of `nodepool.yaml` as users write it: serde types that the JSON Schema is generated from.
//!
//! Field names and defaults follow upstream Nodepool so existing files load unchanged. Unknown
//! keys are rejected (`deny_unknown_fields`, `additionalProperties: false`). Providers of
//! drivers this version does not implement are kept as raw JSON and ignored with a warning.

use crate::secret::Secret;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// The whole `nodepool.yaml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    title = "nodepool.yaml",
    description = "Nodepool configuration (upstream-compatible)."
)]
pub struct NodepoolFile {
    /// Node types that can be requested, and how many of each to keep ready.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Cloud accounts (and other drivers' providers) that nodes are launched in.
    #[serde(default)]
    pub providers: Vec<ProviderEntry>,
    /// Disk images to build with diskimage-builder and upload to providers.
    #[serde(default)]
    pub diskimages: Vec<DiskImageSpec>,
    /// The web endpoint of the launcher.
    #[serde(default)]
    pub webapp: Option<Webapp>,
    /// Directory of extra diskimage-builder elements (ELEMENTS_PATH).
    #[serde(default)]
    pub elements_dir: Option<String>,
    /// Where the builder writes images.
    #[serde(default)]
    pub images_dir: Option<String>,
    /// Where the builder writes one log per build.
    #[serde(default)]
    pub build_log_dir: Option<String>,
    /// How many build logs to keep per image (default 7; -1 keeps all).
    #[serde(default)]
    pub build_log_retention: Option<i64>,
    /// Maximum age in seconds of a held node (0 or unset: no limit).
    #[serde(default)]
    pub max_hold_age: Option<u64>,
    /// Per-tenant resource limits for node requests.
    #[serde(default)]
    pub tenant_resource_limits: Vec<TenantResourceLimit>,
    /// ZooKeeper servers (accepted and kept for compatibility; this version keeps its state in
    /// its own database).
    #[serde(default)]
    pub zookeeper_servers: Vec<ZookeeperServer>,
    /// ZooKeeper TLS settings (accepted and kept).
    #[serde(default)]
    pub zookeeper_tls: Option<ZookeeperTls>,
    /// ZooKeeper session timeout in seconds (accepted and kept).
    #[serde(default)]
    pub zookeeper_timeout: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Label {
    /// The label's unique name.
    pub name: String,
    /// How many READY nodes of this label to keep at all times, across providers.
    #[serde(default)]
    pub min_ready: u32,
    /// Delete READY nodes older than this many seconds (0: never).
    #[serde(default)]
    pub max_ready_age: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webapp {
    /// TCP port (default 8005).
    #[serde(default = "default_webapp_port")]
    pub port: u16,
    /// Address to listen on (default 0.0.0.0).
    #[serde(default = "default_listen_address")]
    pub listen_address: String,
}

fn default_webapp_port() -> u16 {
    8005
}
fn default_listen_address() -> String {
    "0.0.0.0".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantResourceLimit {
    /// The Zuul tenant the limits apply to.
    pub tenant_name: String,
    #[serde(default)]
    pub max_cores: Option<u64>,
    #[serde(default)]
    pub max_ram: Option<u64>,
    #[serde(default)]
    pub max_servers: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZookeeperServer {
    pub host: String,
    #[serde(default = "default_zk_port")]
    pub port: u16,
    #[serde(default)]
    pub chroot: Option<String>,
}

fn default_zk_port() -> u16 {
    2181
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZookeeperTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A string that YAML may have written as a number (`release: 22.04`), kept as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            Value::Bool(b) => Ok(Text(if b { "True" } else { "False" }.into())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string or a number, found {}",
                json_kind(&other)
            ))),
        }
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string (a number or boolean is accepted and kept as its text).",
            "type": ["string", "number", "boolean"]
        })
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A diskimage as written: every field optional so that `parent` chains can tell an explicit
/// value from an inherited one. See `DiskImage` in `config::resolve` for the resolved form.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskImageSpec {
    /// The image's unique name.
    pub name: String,
    /// A template only: never built, only inherited from.
    #[serde(default)]
    pub r#abstract: Option<bool>,
    /// Inherit from this diskimage: elements are appended to the parent's, env-vars merged
    /// per key, other values replaced.
    #[serde(default)]
    pub parent: Option<String>,
    /// diskimage-builder elements.
    #[serde(default)]
    pub elements: Option<Vec<String>>,
    /// Environment for diskimage-builder.
    #[serde(default)]
    pub env_vars: Option<IndexMap<String, Text>>,
    /// Image formats to build (besides those the providers need).
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// Formats to keep on disk after upload when `delete-after-upload` is set.
    #[serde(default)]
    pub keep_formats: Option<Vec<String>>,
    /// Delete the local image files once every upload is done.
    #[serde(default)]
    pub delete_after_upload: Option<bool>,
    /// The distribution release (DIB_RELEASE).
    #[serde(default)]
    pub release: Option<Text>,
    /// Rebuild when the newest build is older than this many seconds (default 86400).
    #[serde(default)]
    pub rebuild_age: Option<u64>,
    /// Kill a build running longer than this many seconds (default 28800).
    #[serde(default)]
    pub build_timeout: Option<u64>,
    /// The build command (default `disk-image-create`).
    #[serde(default)]
    pub dib_cmd: Option<String>,
    /// Build nothing new for this image.
    #[serde(default)]
    pub pause: Option<bool>,
    /// The login user of nodes booted from this image (default `zuul`).
    #[serde(default)]
    pub username: Option<String>,
    /// The Python interpreter on the image (default `auto`).
    #[serde(default)]
    pub python_path: Option<String>,
    /// The login shell type (e.g. `sh`, `cmd`, `powershell`).
    #[serde(default)]
    pub shell_type: Option<String>,
    /// Free-form metadata (kept).
    #[serde(default)]
    pub metadata: Option<IndexMap<String, Value>>,
}

/// One entry of `providers`: an OpenStack provider, or one of another driver.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum ProviderEntry {
    OpenStack(Box<OpenStackProvider>),
    /// A driver this version does not implement: kept as written, ignored with a warning.
    Other(OtherProvider),
}

/// Drivers that select the OpenStack provider schema. `fake` is upstream's test driver.
pub const OPENSTACK_DRIVERS: &[&str] = &["openstack", "fake"];

/// Drivers upstream Nodepool has that this version recognises but does not implement.
pub const OTHER_DRIVERS: &[&str] = &[
    "static",
    "kubernetes",
    "openshift",
    "openshiftpods",
    "aws",
    "azure",
    "gce",
    "ibmvpc",
    "metastatic",
];

#[derive(Clone, Debug, Serialize)]
pub struct OtherProvider {
    pub name: String,
    pub driver: String,
    /// The entry as written.
    pub raw: Value,
}

impl<'de> Deserialize<'de> for ProviderEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Value::deserialize(d)?;
        let driver = raw
            .get("driver")
            .and_then(Value::as_str)
            .unwrap_or("openstack");
        if OPENSTACK_DRIVERS.contains(&driver) {
            serde_json::from_value(raw)
                .map(|p| ProviderEntry::OpenStack(Box::new(p)))
                .map_err(D::Error::custom)
        } else {
            let name = raw
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| D::Error::missing_field("name"))?
                .to_owned();
            Ok(ProviderEntry::Other(OtherProvider {
                name,
                driver: driver.to_owned(),
                raw,
            }))
        }
    }
}

impl JsonSchema for ProviderEntry {
    fn schema_name() -> Cow<'static, str> {
        "ProviderEntry".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let openstack = generator.subschema_for::<OpenStackProvider>();
        json_schema!({
            "description": "A provider. `driver` selects its schema: `openstack` (the default) is \
                implemented; other upstream drivers are recognised and ignored with a warning.",
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "driver": {
                    "type": "string",
                    "enum": OPENSTACK_DRIVERS.iter().chain(OTHER_DRIVERS).collect::<Vec<_>>()
                }
            },
            "if": {
                "anyOf": [
                    {"not": {"required": ["driver"]}},
                    {"properties": {"driver": {"enum": OPENSTACK_DRIVERS}}}
                ]
            },
            "then": openstack
        })
    }
}

/// An OpenStack cloud account and the pools of nodes it offers.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenStackProvider {
    /// The provider's unique name.
    pub name: String,
    /// `openstack` (default) or `fake` (upstream's test driver, treated as openstack).
    #[serde(default = "default_driver")]
    pub driver: String,
    /// The entry of `clouds.yaml` holding this account's credentials.
    #[serde(default)]
    pub cloud: Option<String>,
    /// The region to use within the cloud.
    #[serde(default)]
    pub region_name: Option<String>,
    /// Seconds to wait for a server to become ACTIVE (default 60).
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: u64,
    /// Seconds to wait for a node to be ready, all attempts included (default 3600).
    #[serde(default = "default_launch_timeout")]
    pub launch_timeout: u64,
    /// Total launch attempts for one node before it fails (default 3).
    #[serde(default = "default_launch_retries")]
    pub launch_retries: u32,
    /// Seconds an image upload may take (default 3600).
    #[serde(default = "default_image_upload_timeout")]
    pub image_upload_timeout: u64,
    /// Minimum seconds between API calls to this provider (default 1.0).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Name of uploaded images; `{image_name}` and `{timestamp}` are replaced.
    #[serde(default = "default_image_name_format")]
    pub image_name_format: String,
    /// Server host names; `{label.name}`, `{provider.name}` and `{node.id}` are replaced.
    #[serde(default = "default_hostname_format")]
    pub hostname_format: String,
    /// Delete floating IPs that are not attached to anything.
    #[serde(default)]
    pub clean_floating_ips: bool,
    /// Seconds between sweeps for DOWN ports (0 disables; default 600).
    #[serde(default = "default_port_cleanup_interval")]
    pub port_cleanup_interval: u64,
    /// A program run after each successful upload.
    #[serde(default)]
    pub post_upload_hook: Option<String>,
    /// Cloud operations in flight at once for this provider (0 or unset: no limit).
    #[serde(default)]
    pub max_concurrency: Option<i64>,
    /// Lower numbers are chosen first when several providers can serve a request (default 100).
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Deprecated upstream; accepted and ignored.
    #[serde(default)]
    pub nodepool_id: Option<String>,
    /// Seconds after which an untracked server in this cloud is treated as leaked even without
    /// our metadata (the "uptime more than 12 hours" rule). Unset: off.
    #[serde(default)]
    pub leaked_server_age: Option<u64>,
    /// Diskimages to upload to this provider.
    #[serde(default)]
    pub diskimages: Vec<ProviderDiskImage>,
    /// Images that exist in the cloud already.
    #[serde(default)]
    pub cloud_images: Vec<CloudImage>,
    /// Groups of labels with their own limits.
    #[serde(default)]
    pub pools: Vec<Pool>,
    // --- the inline credential form (instead of `cloud`), as older deployment tools wrote it ---
    /// Keystone URL (inline form, instead of `cloud`).
    #[serde(default, alias = "auth_url")]
    pub auth_url: Option<String>,
    /// User name (inline form).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (inline form). Prefer `%(NODEPOOL_...)` or the secure file over a literal.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// Project id (inline form).
    #[serde(default, alias = "project_id")]
    pub project_id: Option<String>,
    /// Project name (inline form).
    #[serde(default, alias = "project_name")]
    pub project_name: Option<String>,
    /// User domain name (inline form, default `Default`).
    #[serde(default, alias = "user_domain_name")]
    pub user_domain_name: Option<String>,
    /// Project domain name (inline form, default `Default`).
    #[serde(default, alias = "project_domain_name")]
    pub project_domain_name: Option<String>,
    /// Region (inline form's spelling of `region-name`).
    #[serde(default, rename = "region_name")]
    pub region_name_inline: Option<String>,
}

fn default_driver() -> String {
    "openstack".into()
}
fn default_boot_timeout() -> u64 {
    60
}
fn default_launch_timeout() -> u64 {
    3600
}
fn default_launch_retries() -> u32 {
    3
}
fn default_image_upload_timeout() -> u64 {
    3600
}
fn default_rate() -> f64 {
    1.0
}
fn default_image_name_format() -> String {
    "{image_name}-{timestamp}".into()
}
fn default_hostname_format() -> String {
    "{label.name}-{provider.name}-{node.id}".into()
}
fn default_port_cleanup_interval() -> u64 {
    600
}
fn default_priority() -> i64 {
    100
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "writeOnly": true})
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProviderDiskImage {
    /// A top-level diskimage.
    pub name: String,
    /// Upload nothing new of this image to this provider.
    #[serde(default)]
    pub pause: bool,
    /// Properties set on the uploaded image (at most 5; keys and values up to 255 chars).
    #[serde(default)]
    pub meta: IndexMap<String, Text>,
    /// Attach a config drive to servers booted from it.
    #[serde(default)]
    pub config_drive: Option<bool>,
    /// `ssh` (default), `winrm` or `network_cli`.
    #[serde(default)]
    pub connection_type: Option<String>,
    /// Default 22 for ssh, 5986 for winrm.
    #[serde(default)]
    pub connection_port: Option<u16>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CloudImage {
    /// Name used by pool labels' `cloud-image`.
    pub name: String,
    /// The cloud's image id (exclusive with `image-name`).
    #[serde(default)]
    pub image_id: Option<String>,
    /// The cloud's image name (exclusive with `image-id`; default: `name`).
    #[serde(default)]
    pub image_name: Option<String>,
    /// Image property filters used to find the image (instead of a name or id).
    #[serde(default)]
    pub image_filters: Option<IndexMap<String, Text>>,
    #[serde(default)]
    pub config_drive: Option<bool>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub connection_type: Option<String>,
    #[serde(default)]
    pub connection_port: Option<u16>,
    #[serde(default)]
    pub python_path: Option<String>,
    #[serde(default)]
    pub shell_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pool {
    /// Unique within the provider.
    pub name: String,
    /// Most servers this pool may have at once (unset: no pool limit).
    #[serde(default)]
    pub max_servers: Option<u64>,
    /// Most vCPUs this pool's servers may use.
    #[serde(default)]
    pub max_cores: Option<u64>,
    /// Most RAM (MB) this pool's servers may use.
    #[serde(default)]
    pub max_ram: Option<u64>,
    /// Most volumes (servers booted from volume) in the pool.
    #[serde(default)]
    pub max_volumes: Option<u64>,
    /// Most GB of boot volumes in the pool.
    #[serde(default)]
    pub max_volume_gb: Option<u64>,
    /// Pools with a lower number are preferred (default 100).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Attached to every node of the pool, passed on to Zuul.
    #[serde(default)]
    pub node_attributes: IndexMap<String, Value>,
    /// Network names servers are attached to.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Security groups of the servers.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Allocate a floating IP when a server has no public address (default true).
    #[serde(default = "default_true")]
    pub auto_floating_ip: bool,
    /// Scan SSH host keys of new nodes (default true).
    #[serde(default = "default_true")]
    pub host_key_checking: bool,
    /// Ignore the cloud's own quota (count only the pool's limits).
    #[serde(default)]
    pub ignore_provider_quota: bool,
    /// Availability zones to spread servers over (default: those the cloud offers).
    #[serde(default)]
    pub availability_zones: Vec<String>,
    /// The labels this pool offers.
    #[serde(default)]
    pub labels: Vec<PoolLabel>,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolLabel {
    /// A top-level label.
    pub name: String,
    /// A provider diskimage to boot from (exclusive with `cloud-image`).
    #[serde(default)]
    pub diskimage: Option<String>,
    /// A provider cloud-image to boot from (exclusive with `diskimage`).
    #[serde(default)]
    pub cloud_image: Option<String>,
    /// The smallest flavor with at least this much RAM (MB) is used.
    #[serde(default)]
    pub min_ram: Option<u64>,
    /// A flavor whose name contains this text (with `min-ram`: the smallest such one).
    #[serde(default)]
    pub flavor_name: Option<String>,
    /// Nova keypair to inject.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Log the console output of a server that failed to boot.
    #[serde(default)]
    pub console_log: bool,
    /// Boot from a new volume instead of local disk.
    #[serde(default)]
    pub boot_from_volume: bool,
    /// Size in GB of that volume (default 50).
    #[serde(default = "default_volume_size")]
    pub volume_size: u64,
    /// Nova metadata set on every server of this label.
    #[serde(default)]
    pub instance_properties: IndexMap<String, Text>,
    /// Like `instance-properties`, with `{request.*}` and `{node.*}` fields replaced.
    #[serde(default)]
    pub dynamic_instance_properties: IndexMap<String, Text>,
    /// cloud-init user data.
    #[serde(default)]
    pub userdata: Option<String>,
    /// Networks for this label (overrides the pool's).
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// Scan SSH host keys (overrides the pool's).
    #[serde(default)]
    pub host_key_checking: Option<bool>,
}

fn default_volume_size() -> u64 {
    50
}

/// The secure file (`-s secure.conf`): secrets kept out of the public config repo.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecureFile {
    #[serde(default)]
    pub diskimages: Vec<SecureDiskImage>,
    #[serde(default)]
    pub zookeeper_servers: Vec<ZookeeperServer>,
    #[serde(default)]
    pub zookeeper_tls: Option<ZookeeperTls>,
    #[serde(default)]
    pub zookeeper_timeout: Option<f64>,
    /// Inline-form provider passwords, by provider name.
    #[serde(default)]
    pub providers: Vec<SecureProvider>,
    /// Bearer tokens the daemon's node API accepts.
    #[serde(default)]
    pub api_tokens: Vec<Secret>,
    /// The secret of the git push webhook (`X-Hub-Signature-256`).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecureDiskImage {
    pub name: String,
    #[serde(default)]
    pub env_vars: IndexMap<String, Text>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecureProvider {
    pub name: String,
    pub password: Secret,
}
