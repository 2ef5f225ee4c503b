//! Resolved credentials of one provider: what the OpenStack client needs to authenticate.

use crate::secret::Secret;
use serde::Serialize;

/// How to authenticate against Keystone v3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `auth_type: password` (the default): a user and a project scope.
    Password {
        username: Option<String>,
        user_id: Option<String>,
        password: Secret,
        user_domain_name: Option<String>,
        user_domain_id: Option<String>,
        project_name: Option<String>,
        project_id: Option<String>,
        project_domain_name: Option<String>,
        project_domain_id: Option<String>,
    },
    /// `auth_type: v3applicationcredential`.
    ApplicationCredential {
        id: Option<String>,
        name: Option<String>,
        /// Needed with `name` (application credentials are per user).
        username: Option<String>,
        user_id: Option<String>,
        user_domain_name: Option<String>,
        user_domain_id: Option<String>,
        secret: Secret,
    },
    /// `auth_type: token` / `v3token`: a pre-issued token.
    Token {
        token: Secret,
        project_name: Option<String>,
        project_id: Option<String>,
        project_domain_name: Option<String>,
        project_domain_id: Option<String>,
    },
}

/// Everything needed to talk to one cloud account, resolved from `clouds.yaml` (+ `secure.yaml`)
/// or from the inline provider form. Holds secrets, so it is never serialised; use
/// [`CloudCredentials::describe`] for a printable summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudCredentials {
    /// Where these came from, e.g. `clouds.yaml:mycloud` or `inline provider rax-dfw`.
    pub source: String,
    /// Keystone endpoint as configured (may end in `/v2.0`, `/v3` or nothing).
    pub auth_url: String,
    pub auth: AuthMethod,
    pub region_name: Option<String>,
    /// `public` (default), `internal` or `admin`.
    pub interface: String,
    /// Verify TLS certificates (clouds.yaml `verify`, default true).
    pub verify: bool,
    /// A CA bundle to trust (clouds.yaml `cacert`).
    pub cacert: Option<String>,
    /// Per-service endpoint overrides (`compute_endpoint_override`, ...), keyed by service type.
    pub endpoint_overrides: Vec<(String, String)>,
    /// clouds.yaml `image_format` (what the builder must produce for this cloud).
    pub image_format: Option<String>,
}

/// The printable part of [`CloudCredentials`]: no secrets in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialsSummary {
    pub source: String,
    pub auth_url: String,
    pub auth_type: &'static str,
    pub user: Option<String>,
    pub project: Option<String>,
    pub region_name: Option<String>,
}

impl CloudCredentials {
    /// Keystone v3 password authentication of `username` in `project`, both in the `Default`
    /// domain, on the public interface with TLS verified (what most clouds.yaml entries say).
    pub fn password(
        source: impl Into<String>,
        auth_url: impl Into<String>,
        username: impl Into<String>,
        password: Secret,
        project: impl Into<String>,
    ) -> Self {
        CloudCredentials {
            source: source.into(),
            auth_url: auth_url.into(),
            auth: AuthMethod::Password {
                username: Some(username.into()),
                user_id: None,
                password,
                user_domain_name: Some("Default".into()),
                user_domain_id: None,
                project_name: Some(project.into()),
                project_id: None,
                project_domain_name: Some("Default".into()),
                project_domain_id: None,
            },
            region_name: None,
            interface: "public".into(),
            verify: true,
            cacert: None,
            endpoint_overrides: Vec::new(),
            image_format: None,
        }
    }

    pub fn describe(&self) -> CredentialsSummary {
        let (auth_type, user, project) = match &self.auth {
            AuthMethod::Password {
                username,
                user_id,
                project_name,
                project_id,
                ..
            } => (
                "password",
                username.clone().or_else(|| user_id.clone()),
                project_name.clone().or_else(|| project_id.clone()),
            ),
            AuthMethod::ApplicationCredential { id, name, .. } => (
                "v3applicationcredential",
                id.clone().or_else(|| name.clone()),
                None,
            ),
            AuthMethod::Token {
                project_name,
                project_id,
                ..
            } => (
                "token",
                None,
                project_name.clone().or_else(|| project_id.clone()),
            ),
        };
        CredentialsSummary {
            source: self.source.clone(),
            auth_url: self.auth_url.clone(),
            auth_type,
            user,
            project,
            region_name: self.region_name.clone(),
        }
    }
}
