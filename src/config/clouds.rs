//! `clouds.yaml` (+ `secure.yaml` beside it) → the credentials of each provider, as openstacksdk finds them.

use super::credentials::{AuthMethod, CloudCredentials};
use super::model::OpenStackProvider;
use super::yaml;
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        path: PathBuf,
        line: u32,
        column: u32,
        message: String,
    },
    #[error(
        "provider `{provider}`: no clouds.yaml found (looked in $OS_CLIENT_CONFIG_FILE, ./clouds.yaml, \
         ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)"
    )]
    NoCloudsFile { provider: String },
    #[error("provider `{provider}`: cloud `{cloud}` is not in {path}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownCloud {
        provider: String,
        cloud: String,
        path: PathBuf,
        hint: Option<String>,
    },
    #[error("provider `{provider}` ({source_desc}): {message}")]
    Incomplete {
        provider: String,
        source_desc: String,
        message: String,
    },
}

/// A `clouds.yaml` with its `secure.yaml` merged in.
#[derive(Clone, Debug)]
pub struct CloudsFile {
    pub path: PathBuf,
    clouds: Map<String, Value>,
}

impl CloudsFile {
    /// Find `clouds.yaml` where openstacksdk looks: `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
    /// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`. `None` if none exists.
    pub fn discover() -> Result<Option<CloudsFile>, CredentialsError> {
        let mut candidates = Vec::new();
        if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
            candidates.push(PathBuf::from(p));
        }
        candidates.push(PathBuf::from("clouds.yaml"));
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
        }
        candidates.push(PathBuf::from("/etc/openstack/clouds.yaml"));
        match candidates.into_iter().find(|p| p.is_file()) {
            Some(p) => CloudsFile::load(&p).map(Some),
            None => Ok(None),
        }
    }

    /// Read a clouds.yaml, merging `secure.yaml` from the same directory when present.
    pub fn load(path: &Path) -> Result<CloudsFile, CredentialsError> {
        let mut clouds = read_clouds(path)?;
        let secure = path.with_file_name("secure.yaml");
        if secure.is_file() {
            for (name, extra) in read_clouds(&secure)? {
                let entry = clouds
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                deep_merge(entry, extra);
            }
        }
        Ok(CloudsFile {
            path: path.to_owned(),
            clouds,
        })
    }

    pub fn cloud_names(&self) -> impl Iterator<Item = &str> {
        self.clouds.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.clouds.get(name)
    }
}

fn read_clouds(path: &Path) -> Result<Map<String, Value>, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (value, _) = yaml::parse(&text).map_err(|e| CredentialsError::Yaml {
        path: path.to_owned(),
        line: e.pos.line,
        column: e.pos.column,
        message: e.message,
    })?;
    Ok(value
        .get("clouds")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

fn deep_merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                deep_merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// The credentials of `provider`: from its `cloud:` entry in `clouds`, or from its inline form.
pub fn credentials_for(
    provider: &OpenStackProvider,
    clouds: Option<&CloudsFile>,
) -> Result<CloudCredentials, CredentialsError> {
    match &provider.cloud {
        Some(cloud) => {
            let file = clouds.ok_or_else(|| CredentialsError::NoCloudsFile {
                provider: provider.name.clone(),
            })?;
            let entry = file
                .get(cloud)
                .ok_or_else(|| CredentialsError::UnknownCloud {
                    provider: provider.name.clone(),
                    cloud: cloud.clone(),
                    path: file.path.clone(),
                    hint: super::diagnostic::did_you_mean(cloud, file.cloud_names()),
                })?;
            from_clouds_entry(provider, cloud, &file.path, entry)
        }
        None => inline(provider),
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn from_clouds_entry(
    provider: &OpenStackProvider,
    cloud: &str,
    path: &Path,
    entry: &Value,
) -> Result<CloudCredentials, CredentialsError> {
    let source = format!("{}:{cloud}", path.display());
    let incomplete = |message: String| CredentialsError::Incomplete {
        provider: provider.name.clone(),
        source_desc: source.clone(),
        message,
    };
    let auth = entry.get("auth").cloned().unwrap_or(Value::Null);
    let auth_url =
        s(&auth, "auth_url").ok_or_else(|| incomplete("`auth.auth_url` is missing".into()))?;
    let auth_type = s(entry, "auth_type").unwrap_or_else(|| {
        if auth.get("application_credential_secret").is_some() {
            "v3applicationcredential".into()
        } else {
            "password".into()
        }
    });
    // `domain_name` / `domain_id` set both the user's and the project's domain, as in openstacksdk.
    let dom_name = s(&auth, "domain_name");
    let dom_id = s(&auth, "domain_id");
    let method = match auth_type.as_str() {
        "password" | "v3password" => AuthMethod::Password {
            username: s(&auth, "username"),
            user_id: s(&auth, "user_id"),
            password: Secret::new(
                s(&auth, "password")
                    .ok_or_else(|| incomplete("`auth.password` is missing".into()))?,
            ),
            user_domain_name: s(&auth, "user_domain_name").or_else(|| dom_name.clone()),
            user_domain_id: s(&auth, "user_domain_id").or_else(|| dom_id.clone()),
            project_name: s(&auth, "project_name").or_else(|| s(&auth, "tenant_name")),
            project_id: s(&auth, "project_id").or_else(|| s(&auth, "tenant_id")),
            project_domain_name: s(&auth, "project_domain_name").or(dom_name),
            project_domain_id: s(&auth, "project_domain_id").or(dom_id),
        },
        "v3applicationcredential" => AuthMethod::ApplicationCredential {
            id: s(&auth, "application_credential_id"),
            name: s(&auth, "application_credential_name"),
            username: s(&auth, "username"),
            user_id: s(&auth, "user_id"),
            user_domain_name: s(&auth, "user_domain_name").or(dom_name),
            user_domain_id: s(&auth, "user_domain_id").or(dom_id),
            secret: Secret::new(s(&auth, "application_credential_secret").ok_or_else(|| {
                incomplete("`auth.application_credential_secret` is missing".into())
            })?),
        },
        "token" | "v3token" => AuthMethod::Token {
            token: Secret::new(
                s(&auth, "token").ok_or_else(|| incomplete("`auth.token` is missing".into()))?,
            ),
            project_name: s(&auth, "project_name"),
            project_id: s(&auth, "project_id"),
            project_domain_name: s(&auth, "project_domain_name").or(dom_name),
            project_domain_id: s(&auth, "project_domain_id").or(dom_id),
        },
        other => return Err(incomplete(format!("auth_type `{other}` is not supported"))),
    };
    let region_name = provider
        .region_name
        .clone()
        .or_else(|| s(entry, "region_name"))
        .or_else(|| {
            entry
                .get("regions")
                .and_then(Value::as_array)
                .and_then(|r| r.first())
                .and_then(|r| r.as_str().map(str::to_owned).or_else(|| s(r, "name")))
        });
    let endpoint_overrides = entry
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let service = k.strip_suffix("_endpoint_override")?;
            Some((service.replace('_', "-"), v.as_str()?.to_owned()))
        })
        .collect();
    Ok(CloudCredentials {
        source,
        auth_url,
        auth: method,
        region_name,
        interface: s(entry, "interface").unwrap_or_else(|| "public".into()),
        verify: entry.get("verify").and_then(Value::as_bool).unwrap_or(true),
        cacert: s(entry, "cacert"),
        endpoint_overrides,
        image_format: s(entry, "image_format"),
    })
}

fn inline(p: &OpenStackProvider) -> Result<CloudCredentials, CredentialsError> {
    let source = format!("inline credentials of provider `{}`", p.name);
    let incomplete = |message: &str| CredentialsError::Incomplete {
        provider: p.name.clone(),
        source_desc: source.clone(),
        message: message.into(),
    };
    let auth_url = p
        .auth_url
        .clone()
        .ok_or_else(|| incomplete("`auth-url` is missing"))?;
    let password = p
        .password
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            incomplete("no password (set `password` from %(NODEPOOL_...) or the secure file)")
        })?;
    // In the Keystone v2 era `project_id` usually held the tenant *name*; an id is 32 hex digits.
    let is_id = |v: &str| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit());
    let (project_name, project_id) = match (&p.project_name, &p.project_id) {
        (Some(n), id) => (Some(n.clone()), id.clone()),
        (None, Some(id)) if is_id(id) => (None, Some(id.clone())),
        (None, Some(name)) => {
            tracing::warn!(provider = %p.name, "project_id `{name}` is not a project id; using it as the project name");
            (Some(name.clone()), None)
        }
        (None, None) => return Err(incomplete("`project-name` or `project-id` is missing")),
    };
    let domain = |d: &Option<String>| Some(d.clone().unwrap_or_else(|| "Default".into()));
    Ok(CloudCredentials {
        source,
        auth_url,
        auth: AuthMethod::Password {
            username: p.username.clone(),
            user_id: None,
            password,
            user_domain_name: domain(&p.user_domain_name),
            user_domain_id: None,
            project_name,
            project_id,
            project_domain_name: domain(&p.project_domain_name),
            project_domain_id: None,
        },
        region_name: p
            .region_name
            .clone()
            .or_else(|| p.region_name_inline.clone())
            .filter(|r| !r.is_empty()),
        interface: "public".into(),
        verify: true,
        cacert: None,
        endpoint_overrides: Vec::new(),
        image_format: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::collections::BTreeMap;

    fn provider(yaml: &str) -> OpenStackProvider {
        let (c, _) = load_str(Path::new("n.yaml"), yaml, None, &BTreeMap::new()).unwrap();
        c.providers[0].clone()
    }

    #[test]
    fn clouds_yaml_with_secure_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("clouds.yaml"),
            "clouds:\n  mycloud:\n    region_name: RegionOne\n    image_format: raw\n    auth:\n      auth_url: http://k:5000/v3\n      username: nodepool\n      project_name: nodepool\n      user_domain_name: Default\n      project_domain_name: Default\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("secure.yaml"),
            "clouds:\n  mycloud:\n    auth:\n      password: from-secure\n",
        )
        .unwrap();
        let clouds = CloudsFile::load(&dir.path().join("clouds.yaml")).unwrap();
        let p = provider("providers:\n  - name: p\n    cloud: mycloud\n");
        let c = credentials_for(&p, Some(&clouds)).unwrap();
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        assert_eq!(c.image_format.as_deref(), Some("raw"));
        match &c.auth {
            AuthMethod::Password {
                password,
                project_name,
                ..
            } => {
                assert_eq!(password.expose(), "from-secure");
                assert_eq!(project_name.as_deref(), Some("nodepool"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("from-secure"));

        let p = provider("providers:\n  - name: p\n    cloud: mycloude\n");
        let err = credentials_for(&p, Some(&clouds)).unwrap_err().to_string();
        assert!(err.contains("did you mean `mycloud`?"), "{err}");
    }

    #[test]
    fn application_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("clouds.yaml");
        std::fs::write(&f, "clouds:\n  ac:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k/v3\n      application_credential_id: abc\n      application_credential_secret: shh\n").unwrap();
        let clouds = CloudsFile::load(&f).unwrap();
        let c = credentials_for(
            &provider("providers:\n  - name: p\n    cloud: ac\n"),
            Some(&clouds),
        )
        .unwrap();
        assert!(
            matches!(c.auth, AuthMethod::ApplicationCredential { ref id, .. } if id.as_deref() == Some("abc"))
        );
    }

    #[test]
    fn seed_inline_form() {
        let mut p = provider(
            "providers:\n  - name: default\n    auth_url: http://localhost:5000/v2.0\n    project_id: 'tenantname'\n    username: 'user'\n    password: 'secret'\n    region_name: ''\n",
        );
        let c = credentials_for(&p, None).unwrap();
        assert_eq!(c.region_name, None);
        match &c.auth {
            AuthMethod::Password {
                project_name,
                project_id,
                ..
            } => {
                assert_eq!(project_name.as_deref(), Some("tenantname"));
                assert_eq!(project_id, &None);
            }
            other => panic!("{other:?}"),
        }
        p.password = None;
        let err = credentials_for(&p, None).unwrap_err().to_string();
        assert!(err.contains("no password"), "{err}");
    }
}
