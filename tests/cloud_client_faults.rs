//! The client's fault handling (retries, Retry-After, 401 re-auth, timeouts, rate limit, token renewal) against a scripted HTTP server.
//!
//! The real kit cannot be made to answer 503/429 or hang on demand, so these tests run a tiny
//! HTTP/1.1 server on 127.0.0.1:0 that speaks the real wire shapes (Keystone token + catalog,
//! Nova fault bodies) and answers each request from a per-route script.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodepool::cloud::{ClientOptions, CloudError, CreateServer, OpenStackClient, ServerQuery};
use nodepool::config::credentials::CloudCredentials;
use nodepool::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Sleep this long before answering (to provoke timeouts).
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
        delay: Duration::ZERO,
    }
}

#[derive(Debug, Clone)]
struct Seen {
    route: String,
    token: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct State {
    script: HashMap<String, VecDeque<Reply>>,
    seen: Vec<Seen>,
    tokens_issued: u32,
    /// Lifetime of issued tokens.
    token_ttl: Option<chrono::Duration>,
}

struct Fake {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (st, base) = (state.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (st, base) = (st.clone(), base.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split_whitespace();
                    let method = first.next().unwrap_or("").to_owned();
                    let target = first.next().unwrap_or("").to_owned();
                    let path = target.split('?').next().unwrap_or("").to_owned();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                l.split_once(':')
                                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                            })
                            .map(|(_, v)| v.trim().to_owned())
                    };
                    let len: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let route = format!("{method} {path}");
                    let r = {
                        let mut s = st.lock().unwrap();
                        s.seen.push(Seen {
                            route: route.clone(),
                            token: header("x-auth-token"),
                            at: Instant::now(),
                        });
                        if route == "POST /v3/auth/tokens" && !s.script.contains_key(&route) {
                            s.tokens_issued += 1;
                            let ttl = s.token_ttl.unwrap_or(chrono::Duration::hours(1));
                            token_reply(&base, s.tokens_issued, chrono::Utc::now() + ttl)
                        } else {
                            let r = s.script.get_mut(&route).and_then(|q| q.pop_front());
                            if s.script.get(&route).is_some_and(|q| q.is_empty()) {
                                s.script.remove(&route);
                            }
                            r.unwrap_or_else(|| default_reply(&route))
                        }
                    };
                    tokio::time::sleep(r.delay).await;
                    let reason = match r.status {
                        200 => "OK",
                        201 => "Created",
                        202 => "Accepted",
                        204 => "No Content",
                        401 => "Unauthorized",
                        429 => "Too Many Requests",
                        _ => "Status",
                    };
                    let mut out = format!(
                        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        r.status,
                        r.body.len()
                    );
                    for (k, v) in &r.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&r.body);
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Fake { url, state }
    }

    fn script(&self, route: &str, replies: Vec<Reply>) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(route.into(), replies.into());
    }

    fn seen(&self, route: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.route == route)
            .cloned()
            .collect()
    }

    fn client(&self, opts: ClientOptions) -> OpenStackClient {
        let creds = CloudCredentials {
            region_name: Some("RegionOne".into()),
            ..CloudCredentials::password(
                "inline provider fake",
                format!("{}/v3", self.url),
                "nodepool",
                Secret::new("hunter2-secret"),
                "nodepool",
            )
        };
        OpenStackClient::new(creds, opts).unwrap()
    }
}

fn token_reply(base: &str, n: u32, expires: chrono::DateTime<chrono::Utc>) -> Reply {
    let ep = |ty: &str, url: String| serde_json::json!({"type": ty, "endpoints": [{"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url}]});
    let body = serde_json::json!({"token": {
        "methods": ["password"], "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "project": {"id": "p1", "name": "nodepool"}, "user": {"id": "u1", "name": "nodepool"},
        "roles": [{"id": "r", "name": "member"}],
        "catalog": [ep("compute", format!("{base}/v2.1")), ep("image", base.to_owned()), ep("network", base.to_owned())]}});
    Reply {
        status: 201,
        headers: vec![("X-Subject-Token", format!("tok-{n}"))],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn default_reply(route: &str) -> Reply {
    match route {
        "GET /v2.1/servers/detail" => reply(200, r#"{"servers": []}"#),
        "POST /v2.1/servers" => reply(202, r#"{"server": {"id": "s1", "links": []}}"#),
        "DELETE /v2.1/servers/s1" => reply(204, ""),
        _ => reply(
            404,
            r#"{"itemNotFound": {"code": 404, "message": "no such route in the script"}}"#,
        ),
    }
}

fn fast() -> ClientOptions {
    ClientOptions {
        rate: Duration::ZERO,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        max_retries: 3,
        ..ClientOptions::default()
    }
}

const UNAVAILABLE: &str = r#"{"serviceUnavailable": {"code": 503, "message": "try later"}}"#;

#[tokio::test]
async fn idempotent_get_is_retried_through_5xx() {
    let f = Fake::start().await;
    f.script(
        "GET /v2.1/servers/detail",
        vec![reply(503, UNAVAILABLE), reply(502, "bad gateway")],
    );
    let c = f.client(fast());
    assert!(
        c.list_servers(&ServerQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.seen("GET /v2.1/servers/detail").len(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let f = Fake::start().await;
    f.script("DELETE /v2.1/servers/s1", vec![reply(503, UNAVAILABLE); 10]);
    let c = f.client(fast());
    let err = c.delete_server("s1").await.unwrap_err();
    assert!(
        matches!(err, CloudError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("try later"), "{err}");
    assert_eq!(
        f.seen("DELETE /v2.1/servers/s1").len(),
        4,
        "1 + max_retries attempts"
    );
}

#[tokio::test]
async fn server_create_is_not_retried_after_a_5xx() {
    let f = Fake::start().await;
    f.script(
        "POST /v2.1/servers",
        vec![reply(
            500,
            r#"{"computeFault": {"code": 500, "message": "Unexpected API Error."}}"#,
        )],
    );
    let c = f.client(fast());
    let err = c
        .create_server(&CreateServer::new("n", "f", "i"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(
        f.seen("POST /v2.1/servers").len(),
        1,
        "a create that may have happened is not repeated"
    );
}

#[tokio::test]
async fn server_create_is_retried_after_429_honouring_retry_after() {
    let f = Fake::start().await;
    let mut limited = reply(
        429,
        r#"{"overLimit": {"code": 429, "message": "This request was rate-limited.", "retryAfter": "0.4"}}"#,
    );
    limited.headers.push(("Retry-After", "0.4".into()));
    f.script("POST /v2.1/servers", vec![limited]);
    let c = f.client(fast());
    let id = c
        .create_server(&CreateServer::new("n", "f", "i"))
        .await
        .unwrap();
    assert_eq!(id, "s1");
    let seen = f.seen("POST /v2.1/servers");
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(400),
        "waited {:?}",
        seen[1].at - seen[0].at
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_returned_not_slept() {
    let f = Fake::start().await;
    let mut limited = reply(
        429,
        r#"{"overLimit": {"code": 429, "message": "slow down"}}"#,
    );
    limited.headers.push(("Retry-After", "3600".into()));
    f.script("GET /v2.1/servers/detail", vec![limited]);
    let c = f.client(fast());
    let err = c.list_servers(&ServerQuery::default()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(f.seen("GET /v2.1/servers/detail").len(), 1);
}

#[tokio::test]
async fn a_401_reauthenticates_once() {
    let f = Fake::start().await;
    let unauthorized = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
    f.script("GET /v2.1/servers/detail", vec![reply(401, unauthorized)]);
    let c = f.client(fast());
    c.list_servers(&ServerQuery::default()).await.unwrap();
    let seen = f.seen("GET /v2.1/servers/detail");
    assert_eq!(
        seen.iter()
            .map(|s| s.token.clone().unwrap())
            .collect::<Vec<_>>(),
        ["tok-1", "tok-2"]
    );
    assert_eq!(f.seen("POST /v3/auth/tokens").len(), 2);

    // Rejected again with a fresh token: an Auth error, no loop, no secret.
    f.script(
        "GET /v2.1/servers/detail",
        vec![reply(401, unauthorized), reply(401, unauthorized)],
    );
    let err = c.list_servers(&ServerQuery::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("inline provider fake") && text.contains("user nodepool"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("tok-"),
        "{text}"
    );
}

#[tokio::test]
async fn keystone_rejection_is_an_auth_error_and_not_retried() {
    let f = Fake::start().await;
    f.script(
        "POST /v3/auth/tokens",
        vec![reply(401, r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#)],
    );
    let c = f.client(fast());
    let err = c.authenticate().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("authentication failed for inline provider fake at http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("/v3 as user nodepool: Keystone answered HTTP 401"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
    assert_eq!(f.seen("POST /v3/auth/tokens").len(), 1);
}

#[tokio::test]
async fn hung_responses_time_out() {
    let f = Fake::start().await;
    let mut hung = reply(200, r#"{"servers": []}"#);
    hung.delay = Duration::from_secs(30);
    f.script("GET /v2.1/servers/detail", vec![hung.clone(), hung]);
    let c = f.client(ClientOptions {
        request_timeout: Duration::from_millis(200),
        max_retries: 1,
        ..fast()
    });
    let started = Instant::now();
    let err = c.list_servers(&ServerQuery::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(f.seen("GET /v2.1/servers/detail").len(), 2);
}

#[tokio::test]
async fn connection_refused_is_transport() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fake {
        url: format!("http://127.0.0.1:{port}"),
        state: Arc::default(),
    };
    let c = f.client(ClientOptions {
        max_retries: 1,
        ..fast()
    });
    let err = c.authenticate().await.unwrap_err();
    assert!(
        matches!(err, CloudError::Transport { connect: true, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn rate_limit_spaces_calls() {
    let f = Fake::start().await;
    let c = f.client(ClientOptions {
        rate: Duration::from_millis(100),
        ..fast()
    });
    for _ in 0..3 {
        c.list_servers(&ServerQuery::default()).await.unwrap();
    }
    let mut all: Vec<Instant> = f.state.lock().unwrap().seen.iter().map(|s| s.at).collect();
    all.sort();
    assert_eq!(all.len(), 4, "auth + 3 calls");
    for w in all.windows(2) {
        // Slots are 100 ms apart; allow scheduling slack of a few ms on arrival.
        assert!(
            w[1] - w[0] >= Duration::from_millis(90),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn token_is_renewed_before_expiry() {
    let f = Fake::start().await;
    // A 3 s token: renewed after half its life (the 5 min margin is capped at half the lifetime).
    f.state.lock().unwrap().token_ttl = Some(chrono::Duration::seconds(3));
    let c = f.client(fast());
    c.list_servers(&ServerQuery::default()).await.unwrap();
    c.list_servers(&ServerQuery::default()).await.unwrap();
    assert_eq!(f.seen("POST /v3/auth/tokens").len(), 1, "cached");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    c.list_servers(&ServerQuery::default()).await.unwrap();
    assert_eq!(f.seen("POST /v3/auth/tokens").len(), 2, "renewed");
    let tokens: Vec<_> = f
        .seen("GET /v2.1/servers/detail")
        .into_iter()
        .map(|s| s.token.unwrap())
        .collect();
    assert_eq!(tokens, ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn servers_pagination_follows_next_links_on_our_endpoint() {
    let f = Fake::start().await;
    // The next link names another host (as behind a proxy): only its query is used.
    f.script(
        "GET /v2.1/servers/detail",
        vec![
            reply(200, r#"{"servers": [{"id": "a", "name": "a", "status": "ACTIVE"}], "servers_links": [{"rel": "next", "href": "http://internal.invalid:8774/v2.1/servers/detail?limit=1&marker=a"}]}"#),
            reply(200, r#"{"servers": [{"id": "b", "name": "b", "status": "BUILD"}], "servers_links": [{"rel": "next", "href": "http://internal.invalid:8774/v2.1/servers/detail?limit=1&marker=b"}]}"#),
            reply(200, r#"{"servers": []}"#),
        ],
    );
    let c = f.client(fast());
    let servers = c
        .list_servers(&ServerQuery {
            page_size: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        servers.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(f.seen("GET /v2.1/servers/detail").len(), 3);
}

#[tokio::test]
async fn doctor_names_the_denied_call() {
    use nodepool::cloud::doctor::{Verdict, doctor};
    let f = Fake::start().await;
    for (route, body) in [
        ("GET /v2.1/flavors/detail", r#"{"flavors": []}"#),
        (
            "GET /v2.1/limits",
            r#"{"limits": {"rate": [], "absolute": {"maxTotalInstances": 10, "totalInstancesUsed": 10, "maxTotalCores": 20, "totalCoresUsed": 10, "maxTotalRAMSize": 10240, "totalRAMUsed": 5120}}}"#,
        ),
        (
            "GET /v2.1/os-availability-zone",
            r#"{"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}]}"#,
        ),
        ("GET /v2/images", r#"{"images": []}"#),
        ("GET /v2.0/networks", r#"{"networks": []}"#),
        ("GET /v2.0/floatingips", r#"{"floatingips": []}"#),
    ] {
        f.script(route, vec![reply(200, body), reply(200, body)]);
    }
    f.script(
        "GET /v2.0/ports",
        vec![reply(403, r#"{"NeutronError": {"type": "PolicyNotAuthorized", "message": "rule:get_port is disallowed by policy", "detail": ""}}"#)],
    );
    let c = f.client(fast());
    let report = doctor(&c).await;
    assert_eq!(report.verdict, Verdict::Failed);
    assert!(
        report
            .explanation
            .starts_with("permission denied on GET /v2.0/ports: the account lacks a role"),
        "{}",
        report.explanation
    );
    assert_eq!(report.checks.iter().filter(|c| !c.ok).count(), 1);

    // Everything allowed, but the instance quota is used up: degraded, and it says why.
    f.script("GET /v2.0/ports", vec![reply(200, r#"{"ports": []}"#)]);
    let report = doctor(&c).await;
    assert_eq!(report.verdict, Verdict::Degraded, "{report:?}");
    assert!(
        report
            .explanation
            .contains("no quota is left for instances (10 of 10)"),
        "{}",
        report.explanation
    );
}
