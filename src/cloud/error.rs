//! `CloudError`, and turning an OpenStack HTTP error (status, headers, service-specific body) into it.

use std::fmt;
use std::time::Duration;

/// Which OpenStack service a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Identity,
    Compute,
    Image,
    Network,
}

impl Service {
    /// The catalog `type` of the service.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.catalog_type())
    }
}

/// The request an error is about, printed as `GET /v2.0/ports` (path only: no host, no query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub service: Service,
    pub method: String,
    pub path: String,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Everything that can go wrong talking to a cloud. The variant decides what the caller does:
/// `Auth`/`PermissionDenied` need an operator, `QuotaExceeded` means wait for capacity,
/// `RateLimited`/`Server`/`Timeout`/`Transport` are transient, `NotFound` on a delete means done.
///
/// No variant ever carries a password, token or application-credential secret.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Keystone refused the credentials (or a token could not be renewed).
    #[error("authentication failed for {provider} at {auth_url} as {user}: {message}")]
    Auth {
        provider: String,
        auth_url: String,
        user: String,
        message: String,
    },
    /// 403 that is not about quota: the account lacks a role or a policy forbids the call.
    #[error("permission denied on {op}: {message}")]
    PermissionDenied { op: Operation, message: String },
    /// The project is out of quota (Nova 403/413 "Quota exceeded", Neutron 409 OverQuota).
    #[error("quota exceeded on {op}: {message}")]
    QuotaExceeded { op: Operation, message: String },
    /// 429 (or 413 with Retry-After): back off for `retry_after` if given.
    #[error("rate limited on {op}{}: {message}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        op: Operation,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("not found on {op}: {message}")]
    NotFound { op: Operation, message: String },
    /// 409: the resource is in a state that forbids the call (e.g. an image already active).
    #[error("conflict on {op}: {message}")]
    Conflict { op: Operation, message: String },
    /// Another 4xx: the request itself is wrong (bad flavor, unsupported microversion, ...).
    #[error("{op} rejected with HTTP {status}: {message}")]
    Rejected {
        op: Operation,
        status: u16,
        message: String,
    },
    /// 5xx from the service.
    #[error("server error on {op}: HTTP {status}: {message}")]
    Server {
        op: Operation,
        status: u16,
        message: String,
    },
    #[error("{op} timed out after {}s", after.as_secs_f64())]
    Timeout { op: Operation, after: Duration },
    /// Connection refused/reset, DNS, TLS: the request may or may not have reached the service.
    #[error("transport error on {op}: {message}")]
    Transport {
        op: Operation,
        message: String,
        /// True when the connection was never established, so the request was certainly not processed.
        connect: bool,
    },
    /// A 2xx whose body is not what the API documents.
    #[error("unexpected response to {op}: {message}")]
    BadResponse { op: Operation, message: String },
    /// The catalog has no endpoint for a service/region/interface (and there is no override).
    #[error(
        "no {interface} endpoint for service {service_type}{} in the catalog of {provider}",
        region.as_deref().map(|r| format!(" in region {r}")).unwrap_or_default()
    )]
    NoEndpoint {
        provider: String,
        service_type: String,
        region: Option<String>,
        interface: String,
    },
    /// A name matched more than one resource.
    #[error("{count} {kind}s are named {name:?}; use an id")]
    Ambiguous {
        kind: &'static str,
        name: String,
        count: usize,
    },
    /// The credentials or the request cannot work as given (checked before anything is sent).
    #[error("invalid cloud configuration for {provider}: {message}")]
    Config { provider: String, message: String },
    /// The caller asked for something that cannot be sent (empty id, reserved property name).
    #[error("invalid request: {message}")]
    InvalidRequest { message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CloudError {
    /// Worth retrying the same call later (transient).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CloudError::RateLimited { .. }
                | CloudError::Server { .. }
                | CloudError::Timeout { .. }
                | CloudError::Transport { .. }
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }

    pub fn is_quota(&self) -> bool {
        matches!(self, CloudError::QuotaExceeded { .. })
    }

    /// How long the service asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The useful part of an error body, whatever the service's format.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ErrorBody {
    /// Nova's fault name (`forbidden`, `overLimit`, ...) or Neutron's `type` (`OverQuota`, ...).
    pub kind: Option<String>,
    pub message: String,
    /// Nova puts `"retryAfter": "<secs>"` in 413/429 bodies.
    pub retry_after: Option<Duration>,
}

const MAX_MESSAGE: usize = 500;

/// Parses an error body: Keystone `{"error":{...}}`, Nova `{"<fault>":{"code","message"}}`,
/// Neutron `{"NeutronError":{"type","message","detail"}}`, Glance HTML, or plain text.
pub(crate) fn parse_error_body(content_type: Option<&str>, body: &str) -> ErrorBody {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return ErrorBody::default();
    }
    let looks_json = trimmed.starts_with('{')
        || content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    if looks_json
        && let Ok(serde_json::Value::Object(map)) =
            serde_json::from_str::<serde_json::Value>(trimmed)
    {
        return parse_json_error(&map);
    }
    let is_html = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html"))
        || trimmed.starts_with('<');
    let message = if is_html {
        html_to_text(trimmed)
    } else {
        collapse_ws(trimmed)
    };
    ErrorBody {
        kind: None,
        message: truncate(message),
        retry_after: None,
    }
}

fn parse_json_error(map: &serde_json::Map<String, serde_json::Value>) -> ErrorBody {
    use serde_json::Value;
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    // Neutron
    if let Some(Value::Object(e)) = map.get("NeutronError") {
        let mut message = str_of(e.get("message")).unwrap_or_default();
        if let Some(detail) = str_of(e.get("detail")).filter(|d| !d.is_empty()) {
            message = format!("{message} ({detail})");
        }
        return ErrorBody {
            kind: str_of(e.get("type")),
            message: truncate(message),
            retry_after: None,
        };
    }
    // Keystone (and keystonemiddleware 401s in front of any service)
    if let Some(Value::Object(e)) = map.get("error") {
        let message = str_of(e.get("message"))
            .or_else(|| str_of(e.get("title")))
            .unwrap_or_default();
        return ErrorBody {
            kind: str_of(e.get("title")),
            message: truncate(message),
            retry_after: None,
        };
    }
    // Nova: a single fault object keyed by its name.
    if map.len() == 1
        && let Some((name, Value::Object(e))) = map.iter().next()
    {
        let retry_after = e.get("retryAfter").and_then(|v| match v {
            Value::String(s) => parse_seconds(s),
            Value::Number(n) => n.as_f64().and_then(secs_to_duration),
            _ => None,
        });
        return ErrorBody {
            kind: Some(name.clone()),
            message: truncate(str_of(e.get("message")).unwrap_or_default()),
            retry_after,
        };
    }
    // Some services answer {"message": "..."} or {"title": ..., "description": ...}.
    let message = str_of(map.get("message"))
        .or_else(|| str_of(map.get("description")))
        .or_else(|| str_of(map.get("title")))
        .unwrap_or_else(|| serde_json::Value::Object(map.clone()).to_string());
    ErrorBody {
        kind: None,
        message: truncate(message),
        retry_after: None,
    }
}

/// Text of an HTML error page without its `<title>`/`<h1>` (they only repeat the status line).
fn html_to_text(html: &str) -> String {
    let mut s = html.to_owned();
    for tag in ["head", "title", "h1", "style", "script"] {
        s = remove_element(&s, tag);
    }
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    // webob escapes the detail it puts in the page, so its `<br />` arrive as `&lt;br /&gt;`.
    let out = out
        .replace("<br />", " ")
        .replace("<br/>", " ")
        .replace("<br>", " ");
    collapse_ws(&out)
}

/// Removes every `<tag ...>...</tag>` (case-insensitive), keeping the rest.
fn remove_element(s: &str, tag: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(start) = lower[pos..].find(&open).map(|i| i + pos) {
        // `<h1` must not match `<h10` or `<header`: the next byte ends the name.
        let after = lower.as_bytes().get(start + open.len()).copied();
        if !matches!(after, Some(b'>' | b' ' | b'\t' | b'\n' | b'/')) {
            out.push_str(&s[pos..start + open.len()]);
            pos = start + open.len();
            continue;
        }
        out.push_str(&s[pos..start]);
        match lower[start..].find(&close) {
            Some(end) => pos = start + end + close.len(),
            None => {
                pos = s.len();
                break;
            }
        }
    }
    out.push_str(&s[pos..]);
    out
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: String) -> String {
    // Messages built by webob (Glance, and others behind it) embed `<br />` even in JSON bodies.
    let mut s = if s.contains('<') || s.contains('\n') {
        collapse_ws(
            &s.replace("<br />", " ")
                .replace("<br/>", " ")
                .replace("<br>", " "),
        )
    } else {
        s
    };
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

fn parse_seconds(s: &str) -> Option<Duration> {
    s.trim().parse::<f64>().ok().and_then(secs_to_duration)
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`.
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    if let Some(d) = parse_seconds(value) {
        return Some(d);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Maps a non-2xx response to the error that decides what the caller does.
pub(crate) fn classify(
    op: Operation,
    status: u16,
    retry_after_header: Option<Duration>,
    body: ErrorBody,
) -> CloudError {
    let retry_after = retry_after_header.or(body.retry_after);
    let lower = body.message.to_ascii_lowercase();
    let mentions_quota = lower.contains("quota exceeded")
        || lower.contains("exceeded quota")
        || lower.contains("number of ports exceeded")
        || body.kind.as_deref() == Some("OverQuota");
    let message = if body.message.is_empty() {
        format!("HTTP {status} with no explanation")
    } else {
        body.message
    };
    match status {
        403 if mentions_quota => CloudError::QuotaExceeded { op, message },
        403 => CloudError::PermissionDenied { op, message },
        404 => CloudError::NotFound { op, message },
        409 if mentions_quota => CloudError::QuotaExceeded { op, message },
        409 => CloudError::Conflict { op, message },
        // Old Nova reported quota with 413 overLimit; a 413 with Retry-After is rate limiting.
        413 if retry_after.is_none() && (mentions_quota || lower.contains("quota")) => {
            CloudError::QuotaExceeded { op, message }
        }
        413 if retry_after.is_some() => CloudError::RateLimited {
            op,
            retry_after,
            message,
        },
        429 => CloudError::RateLimited {
            op,
            retry_after,
            message,
        },
        500..=599 => CloudError::Server {
            op,
            status,
            message,
        },
        _ => CloudError::Rejected {
            op,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operation {
        Operation {
            service: Service::Compute,
            method: "POST".into(),
            path: "/v2.1/servers".into(),
        }
    }

    #[test]
    fn keystone_body() {
        let b = parse_error_body(
            Some("application/json"),
            r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#,
        );
        assert_eq!(
            b.message,
            "The request you have made requires authentication."
        );
        assert_eq!(b.kind.as_deref(), Some("Unauthorized"));
    }

    #[test]
    fn nova_quota_body_is_quota_exceeded() {
        let b = parse_error_body(
            Some("application/json"),
            r#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 11, but already used 0 of 10 instances"}}"#,
        );
        assert_eq!(b.kind.as_deref(), Some("forbidden"));
        let e = classify(op(), 403, None, b);
        assert!(e.is_quota(), "{e:?}");
        assert!(e.to_string().contains("already used 0 of 10 instances"));
    }

    #[test]
    fn nova_plain_forbidden_is_permission_denied() {
        let b = parse_error_body(
            None,
            r#"{"forbidden":{"code":403,"message":"Policy doesn't allow os_compute_api:os-quota-sets:update to be performed."}}"#,
        );
        assert!(matches!(
            classify(op(), 403, None, b),
            CloudError::PermissionDenied { .. }
        ));
    }

    #[test]
    fn nova_413_quota_without_retry_after_is_quota() {
        let b = parse_error_body(
            None,
            r#"{"overLimit":{"code":413,"message":"Quota exceeded for cores: Requested 4, but already used 18 of 20 cores"}}"#,
        );
        assert!(classify(op(), 413, None, b).is_quota());
    }

    #[test]
    fn nova_rate_limit_body_retry_after() {
        let b = parse_error_body(
            None,
            r#"{"overLimit":{"code":429,"message":"This request was rate-limited.","retryAfter":"2"}}"#,
        );
        assert_eq!(b.retry_after, Some(Duration::from_secs(2)));
        let e = classify(op(), 429, None, b);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.is_transient());
        // The header wins over the body.
        let b = parse_error_body(None, r#"{"overLimit":{"code":413,"retryAfter":"2"}}"#);
        let e = classify(op(), 413, Some(Duration::from_secs(7)), b);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn neutron_body() {
        let b = parse_error_body(
            Some("application/json"),
            r#"{"NeutronError":{"type":"PortNotFound","message":"Port 46d4 could not be found.","detail":""}}"#,
        );
        assert_eq!(b.kind.as_deref(), Some("PortNotFound"));
        assert_eq!(b.message, "Port 46d4 could not be found.");
        let q = parse_error_body(
            None,
            r#"{"NeutronError":{"type":"OverQuota","message":"Quota exceeded for resources: ['floatingip'].","detail":""}}"#,
        );
        assert!(classify(op(), 409, None, q).is_quota());
        let c = parse_error_body(
            None,
            r#"{"NeutronError":{"type":"IpAddressInUse","message":"in use","detail":""}}"#,
        );
        assert!(matches!(
            classify(op(), 409, None, c),
            CloudError::Conflict { .. }
        ));
    }

    #[test]
    fn glance_html_body() {
        let html = "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID 6491c0b7-aaaa<br /><br />\n\n\n\n </body>\n</html>";
        let b = parse_error_body(Some("text/html; charset=UTF-8"), html);
        assert_eq!(b.message, "No image found with ID 6491c0b7-aaaa");
        let b = parse_error_body(
            Some("text/html"),
            "<html><head><title>415 Unsupported Media Type</title></head><body><h1>415 Unsupported Media Type</h1>Image disk_format qcow2 does not match stream data raw<br /><br />\n</body></html>",
        );
        assert_eq!(
            b.message,
            "Image disk_format qcow2 does not match stream data raw"
        );
    }

    #[test]
    fn glance_415_with_escaped_breaks() {
        // As Glance 33 sends it for raw bytes uploaded to a qcow2 image.
        let html = "<html>\n <head>\n  <title>415 Unsupported Media Type</title>\n </head>\n <body>\n  <h1>415 Unsupported Media Type</h1>\n  The request media type application/octet-stream is not supported by this server.\n&lt;br /&gt;&lt;br /&gt;\nImage disk_format qcow2 does not match stream data raw<br /><br />\n\n\n\n </body>\n</html>";
        let b = parse_error_body(Some("text/html; charset=UTF-8"), html);
        assert_eq!(
            b.message,
            "The request media type application/octet-stream is not supported by this server. Image disk_format qcow2 does not match stream data raw"
        );
    }

    #[test]
    fn webob_json_body() {
        // Glance with `Accept: application/json` (what this client sends) answers webob's JSON.
        let b = parse_error_body(
            Some("application/json"),
            r#"{"message": "The request media type application/octet-stream is not supported by this server.\n<br /><br />\nImage disk_format qcow2 does not match stream data raw\n\n\n", "code": "415 Unsupported Media Type", "title": "Unsupported Media Type"}"#,
        );
        assert_eq!(
            b.message,
            "The request media type application/octet-stream is not supported by this server. Image disk_format qcow2 does not match stream data raw"
        );
    }

    #[test]
    fn html_without_content_type_and_entities() {
        let b = parse_error_body(None, "<p>a &amp; b &lt;c&gt;</p>");
        assert_eq!(b.message, "a & b <c>");
    }

    #[test]
    fn plain_text_and_empty_and_long() {
        assert_eq!(
            parse_error_body(Some("text/plain"), "  bad\n gateway ").message,
            "bad gateway"
        );
        let e = classify(op(), 502, None, parse_error_body(None, ""));
        assert!(
            e.to_string().contains("HTTP 502 with no explanation"),
            "{e}"
        );
        let long = "x".repeat(5000);
        assert!(parse_error_body(None, &long).message.chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn retry_after_header_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-4", now), None);
    }

    #[test]
    fn status_mapping() {
        let e = |s| classify(op(), s, None, ErrorBody::default());
        assert!(e(404).is_not_found());
        assert!(matches!(e(409), CloudError::Conflict { .. }));
        assert!(matches!(e(503), CloudError::Server { status: 503, .. }));
        assert!(matches!(e(400), CloudError::Rejected { status: 400, .. }));
        assert!(matches!(
            e(429),
            CloudError::RateLimited {
                retry_after: None,
                ..
            }
        ));
        assert!(e(503).is_transient() && !e(400).is_transient());
        assert_eq!(
            e(404).to_string(),
            "not found on POST /v2.1/servers: HTTP 404 with no explanation"
        );
    }
}
