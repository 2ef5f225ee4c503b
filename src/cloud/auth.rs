//! Keystone v3: auth URL normalisation, the `POST /v3/auth/tokens` body, the token and its catalog.

use crate::config::credentials::AuthMethod;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::Service;

/// A Keystone v3 base URL (no trailing slash), and whether it was derived from a v2.0 one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdentityUrl {
    pub v3: String,
    pub mapped_from_v2: bool,
}

/// `…/v3` stays; `…/v2.0` becomes `…/v3` (Keystone removed v2.0 in Queens); no version gets `/v3`.
pub(crate) fn normalize_auth_url(auth_url: &str) -> Result<IdentityUrl, String> {
    let trimmed = auth_url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|e| format!("auth_url {auth_url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("auth_url {auth_url:?} must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "auth_url {auth_url:?} must not have a query or fragment"
        ));
    }
    let (base, last) = match trimmed.rsplit_once('/') {
        Some((base, last)) if parsed.path() != "/" && !parsed.path().is_empty() => (base, last),
        _ => (trimmed, ""),
    };
    let result = match last {
        "v3" => IdentityUrl {
            v3: trimmed.to_owned(),
            mapped_from_v2: false,
        },
        "v2.0" | "v2" => IdentityUrl {
            v3: format!("{base}/v3"),
            mapped_from_v2: true,
        },
        // A minor version in the path (`/v3.14`) still means the v3 API.
        v if v.starts_with("v3.") => IdentityUrl {
            v3: format!("{base}/v3"),
            mapped_from_v2: false,
        },
        v if v.len() > 1
            && v.starts_with('v')
            && v[1..].chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            return Err(format!(
                "auth_url {auth_url:?} names identity API {v}; only v3 (and v2.0, mapped to v3) are supported"
            ));
        }
        _ => IdentityUrl {
            v3: format!("{trimmed}/v3"),
            mapped_from_v2: false,
        },
    };
    Ok(result)
}

fn domain(id: &Option<String>, name: &Option<String>) -> Option<Value> {
    match (id, name) {
        (Some(id), _) => Some(json!({ "id": id })),
        (None, Some(name)) => Some(json!({ "name": name })),
        (None, None) => None,
    }
}

/// A user or project given by name needs a domain; Keystone's own default domain has id `default`,
/// which is what clouds.yaml files that name no domain mean.
fn domain_or_default(id: &Option<String>, name: &Option<String>) -> Value {
    domain(id, name).unwrap_or_else(|| json!({ "id": "default" }))
}

fn project_scope(
    project_id: &Option<String>,
    project_name: &Option<String>,
    domain_id: &Option<String>,
    domain_name: &Option<String>,
) -> Option<Value> {
    match (project_id, project_name) {
        (Some(id), _) => Some(json!({ "project": { "id": id } })),
        (None, Some(name)) => Some(json!({
            "project": { "name": name, "domain": domain_or_default(domain_id, domain_name) }
        })),
        (None, None) => None,
    }
}

fn user_ref(
    user_id: &Option<String>,
    username: &Option<String>,
    domain_id: &Option<String>,
    domain_name: &Option<String>,
) -> Option<serde_json::Map<String, Value>> {
    let mut user = serde_json::Map::new();
    match (user_id, username) {
        (Some(id), _) => {
            user.insert("id".into(), json!(id));
        }
        (None, Some(name)) => {
            user.insert("name".into(), json!(name));
            user.insert("domain".into(), domain_or_default(domain_id, domain_name));
        }
        (None, None) => return None,
    }
    Some(user)
}

/// The JSON body of `POST /v3/auth/tokens`. It contains the secret: build it at the point of
/// sending and never log it.
pub(crate) fn auth_request_body(method: &AuthMethod) -> Result<Value, String> {
    let (identity, scope) = match method {
        AuthMethod::Password {
            username,
            user_id,
            password,
            user_domain_name,
            user_domain_id,
            project_name,
            project_id,
            project_domain_name,
            project_domain_id,
        } => {
            let mut user = user_ref(user_id, username, user_domain_id, user_domain_name)
                .ok_or("password auth needs username or user_id")?;
            if password.is_empty() {
                return Err("password auth needs a password".into());
            }
            user.insert("password".into(), json!(password.expose()));
            let scope = project_scope(
                project_id,
                project_name,
                project_domain_id,
                project_domain_name,
            )
            .ok_or(
                "password auth needs project_name or project_id (nodepool works in a project)",
            )?;
            (
                json!({ "methods": ["password"], "password": { "user": user } }),
                Some(scope),
            )
        }
        AuthMethod::ApplicationCredential {
            id,
            name,
            username,
            user_id,
            user_domain_name,
            user_domain_id,
            secret,
        } => {
            if secret.is_empty() {
                return Err(
                    "application credential auth needs application_credential_secret".into(),
                );
            }
            let mut cred = serde_json::Map::new();
            match (id, name) {
                (Some(id), _) => {
                    cred.insert("id".into(), json!(id));
                }
                (None, Some(name)) => {
                    cred.insert("name".into(), json!(name));
                    let user = user_ref(user_id, username, user_domain_id, user_domain_name).ok_or(
                        "application credential by name needs username or user_id (credentials are per user)",
                    )?;
                    cred.insert("user".into(), Value::Object(user));
                }
                (None, None) => {
                    return Err(
                        "application credential auth needs application_credential_id or application_credential_name"
                            .into(),
                    );
                }
            }
            cred.insert("secret".into(), json!(secret.expose()));
            // An application credential is already scoped to its project: no scope may be sent.
            (
                json!({ "methods": ["application_credential"], "application_credential": cred }),
                None,
            )
        }
        AuthMethod::Token {
            token,
            project_name,
            project_id,
            project_domain_name,
            project_domain_id,
        } => {
            if token.is_empty() {
                return Err("token auth needs a token".into());
            }
            let scope = project_scope(
                project_id,
                project_name,
                project_domain_id,
                project_domain_name,
            )
            .ok_or("token auth needs project_name or project_id")?;
            (
                json!({ "methods": ["token"], "token": { "id": token.expose() } }),
                Some(scope),
            )
        }
    };
    let mut auth = serde_json::Map::new();
    auth.insert("identity".into(), identity);
    if let Some(scope) = scope {
        auth.insert("scope".into(), scope);
    }
    Ok(json!({ "auth": auth }))
}

/// Who is authenticating, for error messages (never the secret).
pub(crate) fn principal(method: &AuthMethod) -> String {
    match method {
        AuthMethod::Password {
            username, user_id, ..
        } => match (username, user_id) {
            (Some(n), _) => format!("user {n}"),
            (None, Some(id)) => format!("user id {id}"),
            _ => "an unnamed user".into(),
        },
        AuthMethod::ApplicationCredential { id, name, .. } => match (id, name) {
            (Some(id), _) => format!("application credential {id}"),
            (None, Some(n)) => format!("application credential {n}"),
            _ => "an unnamed application credential".into(),
        },
        AuthMethod::Token { .. } => "a pre-issued token".into(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub token: TokenBody,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenBody {
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub project: Option<IdRef>,
    #[serde(default)]
    pub user: Option<IdRef>,
    #[serde(default)]
    pub roles: Vec<IdRef>,
    #[serde(default)]
    pub catalog: Vec<CatalogEntry>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct IdRef {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct CatalogEntry {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

/// Catalog types a service may be registered under (the first is the official one).
fn type_aliases(service: Service) -> &'static [&'static str] {
    match service {
        Service::Identity => &["identity"],
        Service::Compute => &["compute"],
        Service::Image => &["image"],
        Service::Network => &["network"],
    }
}

/// clouds.yaml spells interfaces `public`, `publicURL`, `public_url` or `PUBLIC` in the wild.
pub(crate) fn normalize_interface(interface: &str) -> String {
    let lower = interface.trim().to_ascii_lowercase();
    let stem = lower
        .strip_suffix("url")
        .map(|s| s.trim_end_matches('_'))
        .unwrap_or(&lower);
    if stem.is_empty() {
        "public".into()
    } else {
        stem.to_owned()
    }
}

/// The endpoint URL of `service` for `interface` in `region` (any region when `None`: the first
/// listed, as keystoneauth does).
pub(crate) fn select_endpoint(
    catalog: &[CatalogEntry],
    service: Service,
    region: Option<&str>,
    interface: &str,
) -> Option<String> {
    let interface = normalize_interface(interface);
    for ty in type_aliases(service) {
        for entry in catalog.iter().filter(|e| e.service_type == *ty) {
            let found = entry.endpoints.iter().find(|ep| {
                normalize_interface(&ep.interface) == interface
                    && region.is_none_or(|r| {
                        ep.region_id.as_deref() == Some(r) || ep.region.as_deref() == Some(r)
                    })
            });
            if let Some(ep) = found {
                return Some(ep.url.clone());
            }
        }
    }
    None
}

/// The versioned API root a client calls, from a catalog URL or override: Nova's URL is already
/// versioned (`…/v2.1`, maybe `…/v2.1/<project>`); Glance's is the bare root, so `/v2` is added;
/// Neutron's likewise gets `/v2.0`.
pub(crate) fn api_root(service: Service, url: &str, project_id: Option<&str>) -> String {
    let mut url = url.trim().trim_end_matches('/').to_owned();
    if let Some(p) = project_id {
        // Endpoint templates from old catalogs / overrides.
        for pat in [
            "%(project_id)s",
            "$(project_id)s",
            "%(tenant_id)s",
            "$(tenant_id)s",
        ] {
            url = url.replace(pat, p);
        }
    }
    let last = url.rsplit('/').next().unwrap_or("");
    let versioned = last.len() > 1
        && last.starts_with('v')
        && last[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
    match service {
        Service::Identity | Service::Compute => url,
        Service::Image if last == "v2" => url,
        Service::Image if versioned => {
            format!(
                "{}/v2",
                url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url)
            )
        }
        Service::Image => format!("{url}/v2"),
        Service::Network if last == "v2.0" => url,
        Service::Network => format!("{url}/v2.0"),
    }
}

/// A token the client holds, with the endpoints it unlocked.
#[derive(Debug)]
pub(crate) struct Session {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
    /// When to stop using it and authenticate again (before `expires_at`).
    pub renew_at: DateTime<Utc>,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    pub compute: Option<String>,
    pub image: Option<String>,
    pub network: Option<String>,
}

impl Session {
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        match service {
            Service::Compute => self.compute.as_deref(),
            Service::Image => self.image.as_deref(),
            Service::Network => self.network.as_deref(),
            Service::Identity => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_url_versions() {
        let n = |u| normalize_auth_url(u).unwrap();
        assert_eq!(
            n("http://127.0.0.1:5000/v3"),
            IdentityUrl {
                v3: "http://127.0.0.1:5000/v3".into(),
                mapped_from_v2: false
            }
        );
        assert_eq!(
            n("http://127.0.0.1:5000/v3/").v3,
            "http://127.0.0.1:5000/v3"
        );
        let v2 = n("https://identity.example.com/v2.0/");
        assert_eq!(v2.v3, "https://identity.example.com/v3");
        assert!(v2.mapped_from_v2);
        assert_eq!(
            n("https://id.example.com:5000").v3,
            "https://id.example.com:5000/v3"
        );
        assert_eq!(n("https://id.example.com/").v3, "https://id.example.com/v3");
        assert_eq!(
            n("https://example.com/identity").v3,
            "https://example.com/identity/v3"
        );
        assert_eq!(
            n("https://example.com/identity/v2.0").v3,
            "https://example.com/identity/v3"
        );
        assert_eq!(n("https://example.com/v3.14").v3, "https://example.com/v3");
        assert!(normalize_auth_url("https://example.com/v4").is_err());
        assert!(normalize_auth_url("example.com:5000").is_err());
        assert!(normalize_auth_url("ftp://example.com/v3").is_err());
    }

    fn password(user_id: bool, project_id: bool, domains_by_id: bool) -> AuthMethod {
        AuthMethod::Password {
            username: (!user_id).then(|| "nodepool".into()),
            user_id: user_id.then(|| "u123".into()),
            password: Secret::new("pw"),
            user_domain_name: (!domains_by_id).then(|| "Default".into()),
            user_domain_id: domains_by_id.then(|| "default".into()),
            project_name: (!project_id).then(|| "np".into()),
            project_id: project_id.then(|| "p123".into()),
            project_domain_name: (!domains_by_id).then(|| "Default".into()),
            project_domain_id: domains_by_id.then(|| "default".into()),
        }
    }

    #[test]
    fn password_body_by_name_and_id() {
        let b = auth_request_body(&password(false, false, false)).unwrap();
        assert_eq!(
            b,
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "nodepool", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "np", "domain": {"name": "Default"}}}}})
        );
        let b = auth_request_body(&password(true, true, true)).unwrap();
        assert_eq!(
            b,
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "id": "u123", "password": "pw"}}},
                "scope": {"project": {"id": "p123"}}}})
        );
        let b = auth_request_body(&password(false, false, true)).unwrap();
        assert_eq!(
            b["auth"]["identity"]["password"]["user"]["domain"],
            json!({"id": "default"})
        );
    }

    #[test]
    fn password_body_defaults_domain_and_validates() {
        let m = AuthMethod::Password {
            username: Some("u".into()),
            user_id: None,
            password: Secret::new("pw"),
            user_domain_name: None,
            user_domain_id: None,
            project_name: Some("p".into()),
            project_id: None,
            project_domain_name: None,
            project_domain_id: None,
        };
        let b = auth_request_body(&m).unwrap();
        assert_eq!(
            b["auth"]["scope"]["project"]["domain"],
            json!({"id": "default"})
        );
        let no_project = match m.clone() {
            AuthMethod::Password {
                username, password, ..
            } => AuthMethod::Password {
                username,
                user_id: None,
                password,
                user_domain_name: None,
                user_domain_id: None,
                project_name: None,
                project_id: None,
                project_domain_name: None,
                project_domain_id: None,
            },
            _ => unreachable!(),
        };
        assert!(
            auth_request_body(&no_project)
                .unwrap_err()
                .contains("project")
        );
    }

    #[test]
    fn application_credential_bodies() {
        let by_id = AuthMethod::ApplicationCredential {
            id: Some("ac1".into()),
            name: None,
            username: None,
            user_id: None,
            user_domain_name: None,
            user_domain_id: None,
            secret: Secret::new("s3"),
        };
        assert_eq!(
            auth_request_body(&by_id).unwrap(),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac1", "secret": "s3"}}}})
        );
        let by_name = AuthMethod::ApplicationCredential {
            id: None,
            name: Some("np".into()),
            username: Some("nodepool".into()),
            user_id: None,
            user_domain_name: Some("Default".into()),
            user_domain_id: None,
            secret: Secret::new("s3"),
        };
        assert_eq!(
            auth_request_body(&by_name).unwrap()["auth"]["identity"]["application_credential"],
            json!({"name": "np", "user": {"name": "nodepool", "domain": {"name": "Default"}}, "secret": "s3"})
        );
        let nameless_user = AuthMethod::ApplicationCredential {
            id: None,
            name: Some("np".into()),
            username: None,
            user_id: None,
            user_domain_name: None,
            user_domain_id: None,
            secret: Secret::new("s3"),
        };
        assert!(
            auth_request_body(&nameless_user)
                .unwrap_err()
                .contains("per user")
        );
    }

    #[test]
    fn token_body() {
        let m = AuthMethod::Token {
            token: Secret::new("tok"),
            project_name: None,
            project_id: Some("p1".into()),
            project_domain_name: None,
            project_domain_id: None,
        };
        assert_eq!(
            auth_request_body(&m).unwrap(),
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "tok"}},
                "scope": {"project": {"id": "p1"}}}})
        );
        assert_eq!(principal(&m), "a pre-issued token");
    }

    /// The shape captured from Keystone 30 (api-surface.md §1), trimmed.
    const TOKEN: &str = r#"{"token": {
      "methods": ["password"],
      "user": {"domain": {"id": "default", "name": "Default"}, "id": "9f2e", "name": "nodepool", "password_expires_at": null},
      "audit_ids": ["V7VONjbBQi-Mjv6sETPbWg"],
      "expires_at": "2026-11-24T00:06:08.000000Z",
      "issued_at":  "2026-11-23T23:06:08.000000Z",
      "project": {"domain": {"id": "default", "name": "Default"}, "id": "4c1a", "name": "nodepool"},
      "is_domain": false,
      "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
      "catalog": [
        {"type": "identity", "name": "keystone", "id": "c1", "endpoints": [
          {"id": "e1", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://127.0.0.1:5000/v3/"}]},
        {"type": "compute", "name": "nova", "id": "c2", "endpoints": [
          {"id": "e2", "interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://10.0.0.1:8774/v2.1"},
          {"id": "e3", "interface": "public", "region_id": "RegionTwo", "region": "RegionTwo", "url": "http://two:8774/v2.1"},
          {"id": "e4", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://127.0.0.1:8774/v2.1"}]},
        {"type": "image", "name": "glance", "id": "c3", "endpoints": [
          {"id": "e5", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://127.0.0.1:9292"}]},
        {"type": "network", "name": "neutron", "id": "c4", "endpoints": [
          {"id": "e6", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://127.0.0.1:9696"}]}
      ]}}"#;

    #[test]
    fn token_and_catalog_selection() {
        let t: TokenResponse = serde_json::from_str(TOKEN).unwrap();
        let t = t.token;
        assert_eq!(t.expires_at.to_rfc3339(), "2026-11-24T00:06:08+00:00");
        assert_eq!(t.project.unwrap().id, "4c1a");
        assert_eq!(t.roles.len(), 2);
        let c = &t.catalog;
        let sel = |s, r, i| select_endpoint(c, s, r, i);
        assert_eq!(
            sel(Service::Compute, Some("RegionOne"), "public").as_deref(),
            Some("http://127.0.0.1:8774/v2.1")
        );
        assert_eq!(
            sel(Service::Compute, Some("RegionTwo"), "publicURL").as_deref(),
            Some("http://two:8774/v2.1")
        );
        assert_eq!(
            sel(Service::Compute, Some("RegionOne"), "internal").as_deref(),
            Some("http://10.0.0.1:8774/v2.1")
        );
        // No region: the first endpoint with the interface.
        assert_eq!(
            sel(Service::Compute, None, "public").as_deref(),
            Some("http://two:8774/v2.1")
        );
        assert_eq!(sel(Service::Compute, Some("RegionOne"), "admin"), None);
        assert_eq!(sel(Service::Image, Some("RegionThree"), "public"), None);
    }

    #[test]
    fn api_roots() {
        assert_eq!(
            api_root(Service::Compute, "http://127.0.0.1:8774/v2.1/", None),
            "http://127.0.0.1:8774/v2.1"
        );
        assert_eq!(
            api_root(
                Service::Compute,
                "http://n:8774/v2.1/%(project_id)s",
                Some("p9")
            ),
            "http://n:8774/v2.1/p9"
        );
        assert_eq!(
            api_root(Service::Image, "http://127.0.0.1:9292", None),
            "http://127.0.0.1:9292/v2"
        );
        assert_eq!(
            api_root(Service::Image, "https://img.example.com/v2/", None),
            "https://img.example.com/v2"
        );
        assert_eq!(
            api_root(Service::Image, "https://img.example.com/v1", None),
            "https://img.example.com/v2"
        );
        assert_eq!(
            api_root(Service::Image, "https://example.com/image", None),
            "https://example.com/image/v2"
        );
        assert_eq!(
            api_root(Service::Network, "http://127.0.0.1:9696/", None),
            "http://127.0.0.1:9696/v2.0"
        );
        assert_eq!(
            api_root(Service::Network, "http://n/v2.0", None),
            "http://n/v2.0"
        );
    }

    #[test]
    fn interfaces() {
        assert_eq!(normalize_interface("publicURL"), "public");
        assert_eq!(normalize_interface("internal_url"), "internal");
        assert_eq!(normalize_interface("ADMIN"), "admin");
        assert_eq!(normalize_interface(""), "public");
    }
}
