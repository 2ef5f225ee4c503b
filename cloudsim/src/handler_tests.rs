//! Unit tests of the HTTP handlers, driven through the in-process router (no sockets).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::SimConfig;
use crate::faults::FaultRule;
use crate::server::test_router;
use crate::{SharedSim, admin};

struct T {
    app: Router,
    sim: SharedSim,
    token: String,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl T {
    async fn new(config: SimConfig) -> T {
        let (app, sim) = test_router(config);
        let mut t = T {
            app,
            sim,
            token: String::new(),
        };
        let r = t
            .call(
                Method::POST,
                "/identity/v3/auth/tokens",
                Some(password_auth("nodepool")),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        t.token = r.header("x-subject-token").to_string();
        t
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if !self.token.is_empty() {
            req = req.header("x-auth-token", &self.token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, None, &[]).await
    }

    async fn boot(&self, name: &str, extra: Value) -> String {
        let image = self.sim.store().images.values().next().unwrap().id.clone();
        let flavor = self.sim.store().flavors[0].id.clone();
        let mut server =
            json!({"name": name, "imageRef": image, "flavorRef": flavor, "networks": "auto"});
        for (k, v) in extra.as_object().unwrap() {
            server[k] = v.clone();
        }
        let r = self
            .call(
                Method::POST,
                "/compute/v2.1/servers",
                Some(json!({ "server": server })),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        r.json()["server"]["id"].as_str().unwrap().to_string()
    }
}

fn password_auth(password: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
        {"name": "nodepool", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "nodepool", "domain": {"name": "Default"}}}}})
}

fn instant() -> SimConfig {
    SimConfig {
        boot_delay_ms: 0,
        delete_delay_ms: 0,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn keystone_discovery_token_and_errors() {
    let t = T::new(instant()).await;
    assert_eq!(
        t.get("/identity").await.status,
        StatusCode::MULTIPLE_CHOICES
    );
    let v = t.get("/identity/v3").await.json();
    assert_eq!(v["version"]["id"], "v3.14");

    let r = t
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            Some(password_auth("nodepool")),
            &[],
        )
        .await;
    let body = r.json();
    let catalog = body["token"]["catalog"].as_array().unwrap();
    assert_eq!(catalog.len(), 4);
    let compute = catalog.iter().find(|s| s["type"] == "compute").unwrap();
    assert_eq!(compute["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(compute["endpoints"][0]["region"], "RegionOne");
    assert!(r.header("x-subject-token").starts_with("gAAAAAB"));

    let bad = t
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            Some(password_auth("nope")),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.json(),
        json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}})
    );
    assert!(!bad.text.contains("nope"));

    let sub = t.token.clone();
    let v = t
        .call(
            Method::GET,
            "/identity/v3/auth/tokens",
            None,
            &[("x-subject-token", &sub)],
        )
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["token"]["project"]["name"], "nodepool");
}

#[tokio::test]
async fn expired_and_missing_tokens_get_401_with_www_authenticate() {
    let mut t = T::new(SimConfig {
        token_ttl_secs: 0,
        ..instant()
    })
    .await;
    let r = t.get("/compute/v2.1/servers/detail").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a 0 s token is already expired"
    );
    t.token = String::new();
    let r = t.get("/network/v2.0/ports").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").starts_with("Keystone uri="));
}

#[tokio::test]
async fn nova_microversions_echoed_and_refused() {
    let t = T::new(instant()).await;
    let r = t
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            None,
            &[("openstack-api-version", "compute 2.79")],
        )
        .await;
    assert_eq!(r.header("openstack-api-version"), "compute 2.79");
    assert_eq!(r.header("x-openstack-nova-api-version"), "2.79");
    let r = t.get("/compute/v2.1/flavors").await;
    assert_eq!(r.header("openstack-api-version"), "compute 2.1");
    let r = t
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            None,
            &[("openstack-api-version", "compute 9.99")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        r.json()["computeFault"]["message"],
        "Version 9.99 is not supported by the API. Minimum is 2.1 and maximum is 2.100."
    );
    let r = t
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            None,
            &[("openstack-api-version", "compute latest")],
        )
        .await;
    assert_eq!(r.header("openstack-api-version"), "compute 2.100");
    // networks is required from 2.37 on.
    let flavor = t.sim.store().flavors[0].id.clone();
    let image = t.sim.store().images.values().next().unwrap().id.clone();
    let body = json!({"server": {"name": "x", "flavorRef": flavor, "imageRef": image}});
    let r = t
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            Some(body),
            &[("openstack-api-version", "compute 2.37")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn server_lifecycle_boot_delay_and_delete() {
    let t = T::new(SimConfig {
        boot_delay_ms: 150,
        delete_delay_ms: 100,
        ..SimConfig::default()
    })
    .await;
    let since = crate::state::iso(chrono::Utc::now() - chrono::Duration::seconds(5));
    let id = t
        .boot(
            "np-1",
            json!({"metadata": {"nodepool_node_id": "1"}, "config_drive": true}),
        )
        .await;
    let s = t.get(&format!("/compute/v2.1/servers/{id}")).await.json();
    assert_eq!(s["server"]["status"], "BUILD");
    assert_eq!(s["server"]["metadata"]["nodepool_node_id"], "1");
    assert_eq!(s["server"]["config_drive"], "True");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let s = t.get(&format!("/compute/v2.1/servers/{id}")).await.json();
    assert_eq!(s["server"]["status"], "ACTIVE");
    let addr = &s["server"]["addresses"]["private"][0];
    assert_eq!(addr["OS-EXT-IPS:type"], "fixed");
    let ports = t
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await
        .json();
    assert_eq!(ports["ports"][0]["device_owner"], "compute:nova");
    assert_eq!(ports["ports"][0]["status"], "ACTIVE");

    let console = t
        .call(
            Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(json!({"os-getConsoleOutput": {"length": 2}})),
            &[],
        )
        .await;
    assert_eq!(
        console.json()["output"].as_str().unwrap().lines().count(),
        2
    );

    let r = t
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let r = t.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    assert_eq!(
        t.get("/compute/v2.1/servers/detail").await.json()["servers"],
        json!([])
    );
    let changed = t
        .get(&format!(
            "/compute/v2.1/servers/detail?changes-since={since}"
        ))
        .await
        .json();
    assert_eq!(changed["servers"][0]["status"], "DELETED");
    let ports = t
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await
        .json();
    assert_eq!(ports["ports"], json!([]), "the server's port goes with it");
}

#[tokio::test]
async fn server_listing_paginates_with_marker_and_next_link() {
    let t = T::new(instant()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.boot(&format!("pg-{i}"), json!({"networks": "none"}))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut uri = "/compute/v2.1/servers/detail?limit=2".to_string();
    let mut pages = 0;
    loop {
        pages += 1;
        let v = t.get(&uri).await.json();
        seen.extend(
            v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
        match v["servers_links"][0]["href"].as_str() {
            Some(next) => uri = next.trim_start_matches(&t.sim.base_url).to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    assert_eq!(pages, 3);
    let named = t.get("/compute/v2.1/servers?name=pg-3").await.json();
    assert_eq!(named["servers"].as_array().unwrap().len(), 1);
    let r = t.get("/compute/v2.1/servers/detail?marker=nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn quota_is_enforced_with_novas_body_and_limits_report_usage() {
    let t = T::new(instant()).await;
    let r = t
        .call(
            Method::PUT,
            "/_sim/quota/nodepool",
            Some(json!({"instances": 2, "cores": 10, "ram": 100000})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    t.boot("q-1", json!({})).await;
    t.boot("q-2", json!({})).await;
    let flavor = t.sim.store().flavors[0].id.clone();
    let image = t.sim.store().images.values().next().unwrap().id.clone();
    let body = json!({"server": {"name": "q-3", "flavorRef": flavor, "imageRef": image, "networks": "none"}});
    let r = t
        .call(Method::POST, "/compute/v2.1/servers", Some(body), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json(),
        json!({"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"}})
    );
    let limits = t.get("/compute/v2.1/limits").await.json();
    let abs = &limits["limits"]["absolute"];
    assert_eq!(
        (
            abs["maxTotalInstances"].as_i64(),
            abs["totalInstancesUsed"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(abs["totalRAMUsed"], 1024);
}

#[tokio::test]
async fn injected_faults_use_each_services_error_body() {
    let t = T::new(instant()).await;
    let add = |rule: Value| {
        let rule: FaultRule = serde_json::from_value(rule).unwrap();
        t.sim.fault_set().add(rule).unwrap()
    };
    add(
        json!({"method": "GET", "path": "/compute/v2.1/flavors$", "count": 1, "action": {"kind": "error", "status": 503}}),
    );
    let r = t.get("/compute/v2.1/flavors").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["serviceUnavailable"]["code"], 503);
    assert_eq!(
        t.get("/compute/v2.1/flavors").await.status,
        StatusCode::OK,
        "count 1 is used up"
    );

    add(
        json!({"path": "/servers/detail", "count": 1, "action": {"kind": "rate_limit", "retry_after": 3}}),
    );
    let r = t.get("/compute/v2.1/servers/detail").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), "3");
    assert_eq!(r.json()["overLimit"]["retryAfter"], "3");

    add(json!({"path": "^/image/", "count": 1, "action": {"kind": "error", "status": 500}}));
    let r = t.get("/image/v2/images").await;
    assert_eq!(r.header("content-type"), "text/html; charset=UTF-8");
    assert!(r.text.contains("<h1>500 Internal Server Error</h1>"));

    add(
        json!({"path": "^/network/", "count": 1, "action": {"kind": "error", "status": 409, "message": "busy"}}),
    );
    let r = t.get("/network/v2.0/ports").await;
    assert_eq!(r.json()["NeutronError"]["message"], "busy");

    add(
        json!({"method": "POST", "path": "/servers$", "count": 1, "action": {"kind": "boot_error", "message": "Build of instance aborted: Quota exceeded"}}),
    );
    let id = t.boot("doomed", json!({})).await;
    let s = t.get(&format!("/compute/v2.1/servers/{id}")).await.json();
    assert_eq!(s["server"]["status"], "ERROR");
    assert_eq!(
        s["server"]["fault"]["message"],
        "Build of instance aborted: Quota exceeded"
    );

    add(json!({"path": "/limits", "count": 1, "action": {"kind": "delay", "ms": 120}}));
    let start = std::time::Instant::now();
    assert_eq!(t.get("/compute/v2.1/limits").await.status, StatusCode::OK);
    assert!(start.elapsed() >= std::time::Duration::from_millis(120));

    let counters = t.sim.counters.snapshot();
    assert_eq!(
        counters.count_status("GET", "/compute/v2.1/flavors", 503),
        1
    );
    assert_eq!(
        counters.count_status("GET", "/compute/v2.1/flavors", 200),
        1
    );
    let faults = t.get("/_sim/faults").await.json();
    assert!(
        faults["faults"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["remaining"] == 0 && f["fired"] == 1)
    );
}

#[tokio::test]
async fn glance_create_upload_list_patch_delete() {
    let t = T::new(instant()).await;
    assert_eq!(t.get("/image").await.status, StatusCode::MULTIPLE_CHOICES);
    assert!(t.get("/image/v2/schemas/image").await.json()["properties"]["checksum"].is_object());
    let r = t
        .call(
            Method::POST,
            "/image/v2/images",
            Some(json!({"name": "np-img", "disk_format": "raw",
            "container_format": "bare", "nodepool_build_id": "0002"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let img = r.json();
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(
        (img["status"].as_str(), img["nodepool_build_id"].as_str()),
        (Some("queued"), Some("0002"))
    );

    let data = vec![7u8; 300_000];
    let put = Request::builder()
        .method(Method::PUT)
        .uri(format!("/image/v2/images/{id}/file"))
        .header("x-auth-token", &t.token)
        .header("content-type", "application/octet-stream")
        .body(Body::from(data.clone()))
        .unwrap();
    let r = t.app.clone().oneshot(put).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let img = t.get(&format!("/image/v2/images/{id}")).await.json();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], 300_000);
    assert_eq!(img["checksum"], hex::encode(crate::state::md5_of(&data)));
    assert_eq!(img["os_hash_algo"], "sha512");

    let again = Request::builder()
        .method(Method::PUT)
        .uri(format!("/image/v2/images/{id}/file"))
        .header("x-auth-token", &t.token)
        .body(Body::from("x"))
        .unwrap();
    let r = t.app.clone().oneshot(again).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let found = t
        .get("/image/v2/images?nodepool_build_id=0002&status=active")
        .await
        .json();
    assert_eq!(found["images"].as_array().unwrap().len(), 1);
    let none = t
        .get("/image/v2/images?nodepool_build_id=0003")
        .await
        .json();
    assert_eq!(none["images"], json!([]));

    let page = t.get("/image/v2/images?limit=1").await.json();
    assert_eq!(page["images"].as_array().unwrap().len(), 1);
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with("/v2/images?limit=1&marker="));
    let page2 = t.get(&format!("/image{next}")).await.json();
    assert_eq!(page2["images"].as_array().unwrap().len(), 1);
    assert_ne!(page2["images"][0]["id"], page["images"][0]["id"]);

    let patch = json!([{"op": "add", "path": "/nodepool_upload_id", "value": "9"}, {"op": "replace", "path": "/name", "value": "renamed"}]);
    let r = t
        .call(
            Method::PATCH,
            &format!("/image/v2/images/{id}"),
            Some(patch),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.json()["name"].as_str(),
            r.json()["nodepool_upload_id"].as_str()
        ),
        (Some("renamed"), Some("9"))
    );

    assert_eq!(
        t.call(Method::DELETE, &format!("/image/v2/images/{id}"), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = t.get(&format!("/image/v2/images/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains(&format!("No image found with ID {id}")));
}

#[tokio::test]
async fn glance_rejects_raw_bytes_for_qcow2() {
    let t = T::new(instant()).await;
    let r = t
        .call(
            Method::POST,
            "/image/v2/images",
            Some(json!({"name": "q", "disk_format": "qcow2", "container_format": "bare"})),
            &[],
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let put = Request::builder()
        .method(Method::PUT)
        .uri(format!("/image/v2/images/{id}/file"))
        .header("x-auth-token", &t.token)
        .body(Body::from(vec![0u8; 1000]))
        .unwrap();
    let r = t.app.clone().oneshot(put).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        t.get(&format!("/image/v2/images/{id}")).await.json()["status"],
        "queued"
    );
}

#[tokio::test]
async fn neutron_floating_ip_attach_detach_and_server_delete() {
    let t = T::new(instant()).await;
    let id = t.boot("fip-srv", json!({})).await;
    let port = t
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await
        .json()["ports"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let public = t.get("/network/v2.0/networks?name=public").await.json()["networks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t
        .call(
            Method::POST,
            "/network/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": public}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let fip = r.json()["floatingip"].clone();
    assert_eq!(
        (fip["status"].as_str(), &fip["port_id"]),
        (Some("DOWN"), &Value::Null)
    );
    let fid = fip["id"].as_str().unwrap().to_string();
    let r = t
        .call(
            Method::PUT,
            &format!("/network/v2.0/floatingips/{fid}"),
            Some(json!({"floatingip": {"port_id": port}})),
            &[],
        )
        .await;
    assert_eq!(r.json()["floatingip"]["status"], "ACTIVE");
    assert_eq!(
        r.json()["floatingip"]["port_details"]["device_id"],
        id.as_str()
    );
    let s = t.get(&format!("/compute/v2.1/servers/{id}")).await.json();
    assert_eq!(
        s["server"]["addresses"]["private"][1]["OS-EXT-IPS:type"],
        "floating"
    );

    t.call(
        Method::DELETE,
        &format!("/compute/v2.1/servers/{id}"),
        None,
        &[],
    )
    .await;
    let f = t
        .get(&format!("/network/v2.0/floatingips/{fid}"))
        .await
        .json();
    assert_eq!(
        (
            f["floatingip"]["status"].as_str(),
            &f["floatingip"]["port_id"]
        ),
        (Some("DOWN"), &Value::Null)
    );

    let r = t.get("/network/v2.0/ports/nope").await;
    assert_eq!(r.json()["NeutronError"]["type"], "PortNotFound");
}

#[tokio::test]
async fn neutron_port_filters_and_pagination() {
    let t = T::new(instant()).await;
    for i in 0..5 {
        let seed = admin::SeedPort {
            name: format!("p{i}"),
            device_owner: if i % 2 == 0 {
                "compute:nova".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        admin::seed_port(&t.sim, seed).unwrap();
    }
    let all = t.get("/network/v2.0/ports?status=DOWN").await.json();
    assert_eq!(all["ports"].as_array().unwrap().len(), 5);
    let compute = t
        .get("/network/v2.0/ports?device_owner=compute:nova&fields=id&fields=name")
        .await
        .json();
    assert_eq!(compute["ports"].as_array().unwrap().len(), 3);
    assert_eq!(compute["ports"][0].as_object().unwrap().len(), 2);
    let page = t.get("/network/v2.0/ports?limit=2").await.json();
    let next = page["ports_links"][0]["href"].as_str().unwrap();
    let rest = t.get(next.trim_start_matches(&t.sim.base_url)).await.json();
    assert_eq!(rest["ports"].as_array().unwrap().len(), 2);
    assert_eq!(rest["ports"][0]["name"], "p2");
}

#[tokio::test]
async fn admin_seeding_reset_and_unknown_routes() {
    let t = T::new(instant()).await;
    let r = t
        .call(Method::POST, "/_sim/servers", Some(json!([
            {"name": "leaked-1", "metadata": {"nodepool_provider_name": "p1"}, "created": "2020-01-01T00:00:00Z", "network": "private"},
            {"name": "broken", "status": "ERROR", "fault": "disk full"}
        ])), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let list = t.get("/compute/v2.1/servers/detail").await.json();
    let servers = list["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    let leaked = servers.iter().find(|s| s["name"] == "leaked-1").unwrap();
    assert_eq!(leaked["created"], "2020-01-01T00:00:00Z");
    assert_eq!(leaked["status"], "ACTIVE");
    let broken = servers.iter().find(|s| s["name"] == "broken").unwrap();
    assert_eq!(broken["fault"]["message"], "disk full");
    let bad = t
        .call(
            Method::POST,
            "/_sim/servers",
            Some(json!({"name": "x", "flavor": "m9.huge"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        t.call(Method::POST, "/_sim/reset", None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    let state = t.get("/_sim/state").await.json();
    assert_eq!(
        (state["servers"].as_i64(), state["tokens"].as_i64()),
        (Some(0), Some(0))
    );

    let r = t.get("/compute/v2.1/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["itemNotFound"].is_object());
}
