//! Simulator configuration: identities, flavors, networks, images, quotas, timings and faults (YAML or JSON).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::faults::FaultRule;

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Everything the simulator starts from. Every field has a default, so `{}` is a valid config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Region name used in the service catalog.
    pub region: String,
    /// Lifetime of issued tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Time a new server spends in BUILD before it becomes ACTIVE (or ERROR), in milliseconds.
    pub boot_delay_ms: u64,
    /// Time between DELETE /servers/{id} and the server disappearing, in milliseconds.
    pub delete_delay_ms: u64,
    /// Highest Nova microversion advertised and accepted.
    pub max_microversion: String,
    /// Capacity of the (single, simulated) hypervisor: a flavor larger than this never schedules
    /// and the server goes to ERROR with "No valid host was found".
    pub host_vcpus: u32,
    pub host_ram_mb: u64,
    pub domains: Vec<DomainConfig>,
    pub projects: Vec<ProjectConfig>,
    pub users: Vec<UserConfig>,
    pub application_credentials: Vec<AppCredentialConfig>,
    pub flavors: Vec<FlavorConfig>,
    pub availability_zones: Vec<String>,
    /// Default compute quota for every project (projects may override it).
    pub quota: QuotaConfig,
    pub networks: Vec<NetworkConfig>,
    pub images: Vec<ImageConfig>,
    pub keypairs: Vec<KeypairConfig>,
    /// Fault rules active from start.
    pub faults: Vec<FaultRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Defaults to a stable UUID derived from the name.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Per-project compute quota; falls back to the global `quota`.
    #[serde(default)]
    pub quota: Option<QuotaConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub password: String,
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Names of the projects this user has the `member` role on.
    #[serde(default)]
    pub projects: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCredentialConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub secret: String,
    /// Owning user name; the credential is scoped to `project`.
    pub user: String,
    pub project: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub vcpus: u32,
    pub ram: u64,
    #[serde(default)]
    pub disk: u64,
    #[serde(default)]
    pub ephemeral: u64,
    #[serde(default)]
    pub swap: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// IPv4 CIDR of the network's single subnet.
    pub cidr: String,
    #[serde(default)]
    pub shared: bool,
    #[serde(default, rename = "router:external")]
    pub external: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default = "default_disk_format")]
    pub disk_format: String,
    #[serde(default = "default_visibility")]
    pub visibility: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypairConfig {
    pub name: String,
    pub public_key: String,
}

fn default_domain() -> String {
    "default".to_string()
}
fn default_disk_format() -> String {
    "qcow2".to_string()
}
fn default_visibility() -> String {
    "public".to_string()
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            instances: 100,
            cores: 200,
            ram: 409_600,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let flavor = |name: &str, vcpus, ram, disk| FlavorConfig {
            id: None,
            name: name.to_string(),
            vcpus,
            ram,
            disk,
            ephemeral: 0,
            swap: 0,
        };
        SimConfig {
            region: "RegionOne".to_string(),
            token_ttl_secs: 3600,
            boot_delay_ms: 500,
            delete_delay_ms: 200,
            max_microversion: "2.100".to_string(),
            host_vcpus: 64,
            host_ram_mb: 262_144,
            domains: vec![DomainConfig {
                id: "default".to_string(),
                name: "Default".to_string(),
            }],
            projects: vec![ProjectConfig {
                id: None,
                name: "nodepool".to_string(),
                domain: default_domain(),
                quota: None,
            }],
            users: vec![UserConfig {
                id: None,
                name: "nodepool".to_string(),
                password: "nodepool".to_string(),
                domain: default_domain(),
                projects: vec!["nodepool".to_string()],
            }],
            application_credentials: vec![],
            flavors: vec![
                flavor("m1.tiny", 1, 512, 1),
                flavor("m1.small", 1, 2048, 20),
                flavor("m1.medium", 2, 4096, 40),
                flavor("m1.large", 4, 8192, 80),
                // Fits the quota but no host: boots into ERROR "No valid host was found".
                flavor("m1.nohost", 128, 8192, 80),
            ],
            availability_zones: vec!["nova".to_string()],
            quota: QuotaConfig::default(),
            networks: vec![
                NetworkConfig {
                    id: None,
                    name: "private".to_string(),
                    cidr: "10.0.0.0/16".to_string(),
                    shared: true,
                    external: false,
                },
                NetworkConfig {
                    id: None,
                    name: "public".to_string(),
                    cidr: "172.24.0.0/16".to_string(),
                    shared: false,
                    external: true,
                },
            ],
            images: vec![ImageConfig {
                id: None,
                name: "cirros".to_string(),
                disk_format: default_disk_format(),
                visibility: default_visibility(),
                size: 21_430_272,
                properties: serde_json::Map::new(),
            }],
            keypairs: vec![],
            faults: vec![],
        }
    }
}

impl SimConfig {
    /// Loads a config file; `.json` files are JSON, anything else is YAML.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        let parsed: SimConfig = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
                path: display.clone(),
                message: e.to_string(),
            })?
        } else {
            serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
                path: display.clone(),
                message: e.to_string(),
            })?
        };
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks cross references (users to projects, credentials to users) and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::nova::parse_microversion(&self.max_microversion).ok_or_else(|| {
            ConfigError::Invalid(format!("bad max_microversion {:?}", self.max_microversion))
        })?;
        let has_project = |name: &str| self.projects.iter().any(|p| p.name == name);
        let has_domain = |d: &str| self.domains.iter().any(|x| x.id == d || x.name == d);
        for p in &self.projects {
            if !has_domain(&p.domain) {
                return Err(ConfigError::Invalid(format!(
                    "project {} has unknown domain {}",
                    p.name, p.domain
                )));
            }
        }
        for u in &self.users {
            if !has_domain(&u.domain) {
                return Err(ConfigError::Invalid(format!(
                    "user {} has unknown domain {}",
                    u.name, u.domain
                )));
            }
            if let Some(p) = u.projects.iter().find(|p| !has_project(p)) {
                return Err(ConfigError::Invalid(format!(
                    "user {} refers to unknown project {p}",
                    u.name
                )));
            }
        }
        for a in &self.application_credentials {
            if !self.users.iter().any(|u| u.name == a.user) || !has_project(&a.project) {
                return Err(ConfigError::Invalid(format!(
                    "application credential {} refers to an unknown user or project",
                    a.name
                )));
            }
        }
        for n in &self.networks {
            crate::state::Cidr::parse(&n.cidr).ok_or_else(|| {
                ConfigError::Invalid(format!("network {}: bad cidr {}", n.name, n.cidr))
            })?;
        }
        for f in &self.faults {
            f.compile()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.availability_zones.is_empty() {
            return Err(ConfigError::Invalid(
                "availability_zones must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// A stable UUID (hyphenated) derived from a kind and a name, so ids survive restarts.
pub fn stable_uuid(kind: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("cloudsim:{kind}:{name}").as_bytes(),
    )
    .to_string()
}

/// A stable 32-hex id (Keystone style) derived from a kind and a name.
pub fn stable_hex(kind: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("cloudsim:{kind}:{name}").as_bytes(),
    )
    .simple()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        SimConfig::default().validate().unwrap();
    }

    #[test]
    fn empty_yaml_gives_defaults() {
        let c: SimConfig = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(c.region, "RegionOne");
        assert_eq!(c.quota.instances, 100);
    }

    #[test]
    fn unknown_project_is_rejected() {
        let mut c = SimConfig::default();
        c.users[0].projects.push("nope".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown project nope")
        );
    }

    #[test]
    fn yaml_with_faults_parses() {
        let y = r#"
boot_delay_ms: 10
quota: {instances: 2, cores: 4, ram: 4096}
faults:
  - method: POST
    path: "/compute/v2.1/servers$"
    action: {kind: error, status: 503}
    probability: 0.5
    count: 3
"#;
        let c: SimConfig = serde_saphyr::from_str(y).unwrap();
        c.validate().unwrap();
        assert_eq!(c.faults.len(), 1);
        assert_eq!(c.quota.instances, 2);
    }
}
