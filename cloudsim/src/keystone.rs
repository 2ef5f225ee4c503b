//! Keystone v3: version discovery, token issue/validate/revoke (password, application credential, token), catalog, auth middleware.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::SharedSim;
use crate::config::stable_hex;
use crate::state::{Identity, Time, Token};

const UNAUTHORIZED: &str = "The request you have made requires authentication.";

/// The authenticated caller of a service API, put in request extensions by [`require_token`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub project_id: String,
}

pub fn routes(sim: SharedSim) -> Router {
    Router::new()
        .route("/", get(versions))
        .route("/identity", get(versions))
        .route("/identity/v3", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(validate_token)
                .post(issue_token)
                .delete(revoke_token)
                .head(check_token),
        )
        .route("/identity/v3/auth/catalog", get(auth_catalog))
        .route("/identity/v3/auth/projects", get(auth_projects))
        .with_state(sim)
}

/// Keystone's error body, e.g. `{"error":{"code":401,"message":...,"title":"Unauthorized"}}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({"error": {"code": status.as_u16(), "message": message, "title": title}});
    (status, Json(body)).into_response()
}

/// The 401 every service answers for a missing/invalid token, with `WWW-Authenticate`.
pub fn unauthorized(sim: &SharedSim) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{}/identity\"", sim.base_url)) {
        r.headers_mut().insert("www-authenticate", v);
    }
    r
}

fn version_doc(sim: &SharedSim) -> Value {
    json!({
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", sim.identity_url())}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

async fn versions(State(sim): State<SharedSim>) -> Response {
    let body = json!({"versions": {"values": [version_doc(&sim)]}});
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

async fn version(State(sim): State<SharedSim>) -> Response {
    Json(json!({"version": version_doc(&sim)})).into_response()
}

/// Looks up a valid (known, unexpired) token.
pub fn lookup(identity: &Identity, token: &str, now: Time) -> Option<Token> {
    identity
        .tokens
        .get(token)
        .filter(|t| t.expires_at > now)
        .cloned()
}

/// Middleware for service APIs: a valid project-scoped `X-Auth-Token`, or 401.
pub async fn require_token(State(sim): State<SharedSim>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| lookup(&sim.identity(), t, Utc::now()));
    match token {
        Some(Token {
            user_id,
            project_id: Some(project_id),
            ..
        }) => {
            req.extensions_mut().insert(Caller {
                user_id,
                project_id,
            });
            next.run(req).await
        }
        _ => unauthorized(&sim),
    }
}

/// Why an authentication request failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{UNAUTHORIZED}")]
    Unauthorized,
}

impl AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::BadRequest(m) => error(StatusCode::BAD_REQUEST, &m),
            AuthError::Unauthorized => error(StatusCode::UNAUTHORIZED, UNAUTHORIZED),
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Resolves `{"id":..}` or `{"name":..}` of a domain reference to a domain id.
fn domain_ref(identity: &Identity, d: Option<&Value>) -> Option<String> {
    let d = d?;
    if let Some(id) = str_at(d, "id") {
        return identity.domain(id).map(|d| d.id.clone());
    }
    let name = str_at(d, "name")?;
    identity
        .domains
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.id.clone())
}

/// Resolves a user reference (`id`, or `name` + `domain`) to a user id.
fn user_ref(identity: &Identity, u: &Value) -> Option<String> {
    if let Some(id) = str_at(u, "id") {
        return identity.user(id).map(|u| u.id.clone());
    }
    let name = str_at(u, "name")?;
    let domain = domain_ref(identity, u.get("domain"))?;
    identity
        .users
        .iter()
        .find(|x| x.name == name && x.domain_id == domain)
        .map(|x| x.id.clone())
}

/// Checks the `auth` object of `POST /v3/auth/tokens` and returns the token to issue.
pub fn authenticate(
    identity: &Identity,
    body: &Value,
    ttl: Duration,
    now: Time,
) -> Result<Token, AuthError> {
    let auth = body
        .get("auth")
        .ok_or_else(|| AuthError::BadRequest("'auth' is a required property".into()))?;
    let ident = auth
        .get("identity")
        .ok_or_else(|| AuthError::BadRequest("'identity' is a required property".into()))?;
    let methods: Vec<String> = ident
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| AuthError::BadRequest("'methods' is a required property".into()))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let scope = auth.get("scope");

    let (user_id, implied_project, app_cred_id, expires_at) =
        if methods.iter().any(|m| m == "password") {
            let user = ident
                .pointer("/password/user")
                .ok_or_else(|| AuthError::BadRequest("'user' is a required property".into()))?;
            let password = str_at(user, "password").unwrap_or_default();
            let uid = user_ref(identity, user).ok_or(AuthError::Unauthorized)?;
            let u = identity.user(&uid).ok_or(AuthError::Unauthorized)?;
            if u.password != password {
                return Err(AuthError::Unauthorized);
            }
            (uid, None, None, now + ttl)
        } else if methods.iter().any(|m| m == "application_credential") {
            let ac = ident.get("application_credential").ok_or_else(|| {
                AuthError::BadRequest("'application_credential' is a required property".into())
            })?;
            let secret = str_at(ac, "secret").unwrap_or_default();
            let cred = if let Some(id) = str_at(ac, "id") {
                identity.app_creds.iter().find(|c| c.id == id)
            } else {
                let name = str_at(ac, "name").ok_or(AuthError::Unauthorized)?;
                let owner = ac
                    .get("user")
                    .and_then(|u| user_ref(identity, u))
                    .ok_or(AuthError::Unauthorized)?;
                identity
                    .app_creds
                    .iter()
                    .find(|c| c.name == name && c.user_id == owner)
            }
            .ok_or(AuthError::Unauthorized)?;
            if cred.secret != secret {
                return Err(AuthError::Unauthorized);
            }
            if scope.is_some() {
                // Application credentials carry their own scope.
                return Err(AuthError::Unauthorized);
            }
            (
                cred.user_id.clone(),
                Some(cred.project_id.clone()),
                Some(cred.id.clone()),
                now + ttl,
            )
        } else if methods.iter().any(|m| m == "token") {
            let old = ident
                .pointer("/token/id")
                .and_then(Value::as_str)
                .and_then(|t| lookup(identity, t, now))
                .ok_or(AuthError::Unauthorized)?;
            // A rescoped token never outlives the one it came from.
            (old.user_id, None, old.app_cred_id, old.expires_at)
        } else {
            return Err(AuthError::Unauthorized);
        };

    let project_id = match (implied_project, scope.and_then(|s| s.get("project"))) {
        (Some(p), _) => Some(p),
        (None, None) => None,
        (None, Some(p)) => {
            let pid = if let Some(id) = str_at(p, "id") {
                identity.project(id).map(|p| p.id.clone())
            } else {
                let name = str_at(p, "name").ok_or(AuthError::Unauthorized)?;
                let domain =
                    domain_ref(identity, p.get("domain")).ok_or(AuthError::Unauthorized)?;
                identity
                    .projects
                    .iter()
                    .find(|x| x.name == name && x.domain_id == domain)
                    .map(|x| x.id.clone())
            }
            .ok_or(AuthError::Unauthorized)?;
            Some(pid)
        }
    };
    if let Some(pid) = &project_id {
        let u = identity.user(&user_id).ok_or(AuthError::Unauthorized)?;
        if !u.project_ids.contains(pid) {
            return Err(AuthError::Unauthorized);
        }
    }
    Ok(Token {
        user_id,
        project_id,
        methods,
        issued_at: now,
        expires_at,
        audit_id: random_token(16),
        app_cred_id,
    })
}

/// A random URL-safe token string.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

fn ks_time(t: Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The service catalog: identity, compute, image, network; public/internal/admin in the region.
pub fn catalog(sim: &SharedSim) -> Value {
    let region = &sim.config.region;
    let service = |kind: &str, name: &str, url: String| {
        let endpoints: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|iface| {
                json!({"id": stable_hex("endpoint", &format!("{kind}-{iface}")), "interface": iface,
                       "region_id": region, "region": region, "url": url})
            })
            .collect();
        json!({"type": kind, "name": name, "id": stable_hex("service", kind), "endpoints": endpoints})
    };
    json!([
        service("identity", "keystone", sim.identity_url()),
        service("compute", "nova", sim.compute_url()),
        service("image", "glance", sim.image_url()),
        service("network", "neutron", sim.network_url()),
    ])
}

/// The `{"token": ...}` body for an issued or validated token.
pub fn token_body(sim: &SharedSim, identity: &Identity, t: &Token, with_catalog: bool) -> Value {
    let domain = |id: &str| {
        let name = identity
            .domain(id)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        json!({"id": id, "name": name})
    };
    let user = identity.user(&t.user_id);
    let mut token = json!({
        "methods": t.methods,
        "user": {
            "domain": domain(user.map(|u| u.domain_id.as_str()).unwrap_or("default")),
            "id": t.user_id,
            "name": user.map(|u| u.name.as_str()).unwrap_or_default(),
            "password_expires_at": null
        },
        "audit_ids": [t.audit_id],
        "expires_at": ks_time(t.expires_at),
        "issued_at": ks_time(t.issued_at),
    });
    if let Some(p) = t.project_id.as_deref().and_then(|p| identity.project(p)) {
        token["project"] = json!({"domain": domain(&p.domain_id), "id": p.id, "name": p.name});
        token["is_domain"] = json!(false);
        token["roles"] = json!([
            {"id": stable_hex("role", "member"), "name": "member"},
            {"id": stable_hex("role", "reader"), "name": "reader"}
        ]);
        if with_catalog {
            token["catalog"] = catalog(sim);
        }
    }
    if let Some(ac) = &t.app_cred_id {
        token["application_credential"] = json!({"id": ac, "restricted": true});
    }
    json!({ "token": token })
}

async fn issue_token(State(sim): State<SharedSim>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Malformed request body: expected JSON.",
        );
    };
    let now = Utc::now();
    let ttl = Duration::seconds(sim.config.token_ttl_secs as i64);
    let mut identity = sim.identity_mut();
    let token = match authenticate(&identity, &body, ttl, now) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    identity.tokens.retain(|_, t| t.expires_at > now);
    let id = format!("gAAAAAB{}", random_token(176));
    let body = token_body(&sim, &identity, &token, true);
    identity.tokens.insert(id.clone(), token);
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r.headers_mut()
        .insert("vary", HeaderValue::from_static("X-Auth-Token"));
    r
}

/// (caller valid, subject token) for the validation endpoints.
fn subject(sim: &SharedSim, headers: &HeaderMap) -> Result<(String, Token), Response> {
    let now = Utc::now();
    let identity = sim.identity();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header("x-auth-token")
        .and_then(|t| lookup(&identity, &t, now))
        .is_none()
    {
        drop(identity);
        return Err(unauthorized(sim));
    }
    let Some(sub) = header("x-subject-token") else {
        return Err(error(StatusCode::NOT_FOUND, "Could not find token."));
    };
    match lookup(&identity, &sub, now) {
        Some(t) => Ok((sub, t)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            &format!("Could not find token: {}.", &sub[..sub.len().min(8)]),
        )),
    }
}

async fn validate_token(
    State(sim): State<SharedSim>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    match subject(&sim, &headers) {
        Ok((sub, t)) => {
            let with_catalog = !uri.query().is_some_and(|q| q.contains("nocatalog"));
            let body = token_body(&sim, &sim.identity(), &t, with_catalog);
            let mut r = Json(body).into_response();
            if let Ok(v) = HeaderValue::from_str(&sub) {
                r.headers_mut().insert("x-subject-token", v);
            }
            r
        }
        Err(r) => r,
    }
}

async fn check_token(State(sim): State<SharedSim>, headers: HeaderMap) -> Response {
    match subject(&sim, &headers) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

async fn revoke_token(State(sim): State<SharedSim>, headers: HeaderMap) -> Response {
    match subject(&sim, &headers) {
        Ok((sub, _)) => {
            sim.identity_mut().tokens.remove(&sub);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

fn caller_token(sim: &SharedSim, headers: &HeaderMap) -> Option<Token> {
    let t = headers.get("x-auth-token")?.to_str().ok()?;
    lookup(&sim.identity(), t, Utc::now())
}

async fn auth_catalog(State(sim): State<SharedSim>, headers: HeaderMap) -> Response {
    match caller_token(&sim, &headers) {
        Some(_) => Json(json!({"catalog": catalog(&sim),
                               "links": {"self": format!("{}/auth/catalog", sim.identity_url())}}))
        .into_response(),
        None => unauthorized(&sim),
    }
}

async fn auth_projects(State(sim): State<SharedSim>, headers: HeaderMap) -> Response {
    let Some(t) = caller_token(&sim, &headers) else {
        return unauthorized(&sim);
    };
    let identity = sim.identity();
    let projects: Vec<Value> = identity
        .user(&t.user_id)
        .map(|u| u.project_ids.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| identity.project(p))
        .map(|p| {
            json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "enabled": true,
                        "is_domain": false, "parent_id": p.domain_id, "description": "", "tags": [],
                        "links": {"self": format!("{}/projects/{}", sim.identity_url(), p.id)}})
        })
        .collect();
    Json(json!({"projects": projects, "links": {"self": null, "next": null, "previous": null}}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppCredentialConfig, SimConfig};

    fn identity() -> Identity {
        let mut c = SimConfig::default();
        c.application_credentials.push(AppCredentialConfig {
            id: Some("ac1".into()),
            name: "np-cred".into(),
            secret: "s3cret".into(),
            user: "nodepool".into(),
            project: "nodepool".into(),
        });
        Identity::from_config(&c)
    }

    fn auth(v: Value) -> Result<Token, AuthError> {
        authenticate(&identity(), &v, Duration::seconds(60), Utc::now())
    }

    #[test]
    fn password_by_names() {
        let t = auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
            {"name": "nodepool", "domain": {"name": "Default"}, "password": "nodepool"}}},
            "scope": {"project": {"name": "nodepool", "domain": {"id": "default"}}}}}),
        )
        .unwrap();
        assert_eq!(t.project_id, Some(identity().projects[0].id.clone()));
    }

    #[test]
    fn password_by_user_id_and_project_id() {
        let i = identity();
        let t = auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
            {"id": i.users[0].id, "password": "nodepool"}}},
            "scope": {"project": {"id": i.projects[0].id}}}}),
        )
        .unwrap();
        assert_eq!(t.user_id, i.users[0].id);
    }

    #[test]
    fn bad_password_wrong_domain_unknown_project_are_401() {
        let bad = [
            json!({"name": "nodepool", "domain": {"id": "default"}, "password": "nope"}),
            json!({"name": "nodepool", "domain": {"id": "other"}, "password": "nodepool"}),
        ];
        for user in bad {
            let r = auth(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}),
            );
            assert_eq!(r.unwrap_err(), AuthError::Unauthorized);
        }
        let r = auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
            {"name": "nodepool", "domain": {"id": "default"}, "password": "nodepool"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}),
        );
        assert_eq!(r.unwrap_err(), AuthError::Unauthorized);
    }

    #[test]
    fn application_credentials_by_id_and_by_name() {
        let t = auth(
            json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "ac1", "secret": "s3cret"}}}}),
        )
        .unwrap();
        assert!(t.project_id.is_some());
        assert_eq!(t.app_cred_id.as_deref(), Some("ac1"));
        auth(
            json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"name": "np-cred", "secret": "s3cret",
            "user": {"name": "nodepool", "domain": {"name": "Default"}}}}}}),
        )
        .unwrap();
        let wrong = auth(
            json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "ac1", "secret": "nope"}}}}),
        );
        assert_eq!(wrong.unwrap_err(), AuthError::Unauthorized);
    }

    #[test]
    fn malformed_is_400() {
        assert!(matches!(
            auth(json!({"x": 1})),
            Err(AuthError::BadRequest(_))
        ));
    }
}
