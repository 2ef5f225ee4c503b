//! The client's per-call counts (operation × status) against the simulator's own request counters: 200s, a 404, a retried 503, a timeout and a dropped connection.

#[path = "common/sim.rs"]
mod sim;

use cloudsim::{FaultAction, FaultRule, SimConfig, SimHandle, Simulator};
use nodepool::cloud::{
    ApiCall, ClientOptions, CloudError, FloatingIpQuery, ImageQuery, OpenStackClient, PortQuery,
    ServerQuery,
};
use std::collections::BTreeMap;
use std::time::Duration;

async fn sim() -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

fn client(sim: &SimHandle, request_timeout: Duration) -> OpenStackClient {
    let creds = sim::credentials(sim.auth_url());
    let opts = ClientOptions {
        rate: Duration::ZERO,
        request_timeout,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    OpenStackClient::new(creds, opts).expect("client")
}

fn counts(c: &OpenStackClient) -> BTreeMap<(String, String), u64> {
    c.api_call_counts()
        .into_iter()
        .map(|(ApiCall { operation, status }, n)| ((operation, status), n))
        .collect()
}

fn key(op: &str, status: &str) -> (String, String) {
    (op.to_owned(), status.to_owned())
}

/// The simulator's counters in the client's naming: its route templates carry the service
/// prefix and API version (`/compute/v2.1/servers/{id}`), which operation names leave out.
/// Status 0 (no answer: the connection hung or was dropped) is given as `no-answer`.
fn sim_counts(sim: &SimHandle) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for c in sim.counters().calls {
        let (service, rest) = [
            ("identity", "/identity/v3"),
            ("compute", "/compute/v2.1"),
            ("image", "/image/v2"),
            ("network", "/network/v2.0"),
        ]
        .into_iter()
        .find_map(|(s, prefix)| c.route.strip_prefix(prefix).map(|r| (s, r)))
        .unwrap_or_else(|| panic!("unexpected simulator route {}", c.route));
        let status = match c.status {
            0 => "no-answer".to_owned(),
            s => s.to_string(),
        };
        *out.entry((format!("{service} {} {rest}", c.method), status))
            .or_default() += c.count;
    }
    out
}

fn fault(method: &str, path: &str, action: FaultAction) -> FaultRule {
    FaultRule {
        method: Some(method.into()),
        path: path.into(),
        probability: 1.0,
        count: Some(1),
        action,
    }
}

#[tokio::test]
async fn counts_by_operation_and_status_match_the_simulator() {
    let sim = sim().await;
    let c = client(&sim, Duration::from_secs(30));

    c.list_servers(&ServerQuery::default()).await.unwrap();
    c.list_servers(&ServerQuery::default()).await.unwrap();
    c.list_images(&ImageQuery::default()).await.unwrap();
    c.list_ports(&PortQuery::default()).await.unwrap();
    c.list_floating_ips(&FloatingIpQuery::default())
        .await
        .unwrap();
    // By name: one list. By id: a list (no such name) then a GET of the id. A hyphenated name
    // that does not exist: a list, then a 404 on the name as an id.
    let net = c.find_network("private").await.unwrap();
    c.find_network(&net.id).await.unwrap();
    let nope = c.find_network("no-such-net-1").await.unwrap_err();
    assert!(matches!(nope, CloudError::NotFound { .. }), "{nope}");
    // A 404: not retried, counted once.
    let missing = c
        .get_server("c510a171-00a9-4d6c-8e3e-0123456789ab")
        .await
        .unwrap_err();
    assert!(matches!(missing, CloudError::NotFound { .. }), "{missing}");
    // A 503 then a success: two calls of the same operation.
    sim.add_fault(fault(
        "GET",
        "/compute/v2.1/limits$",
        FaultAction::Error {
            status: 503,
            message: None,
        },
    ))
    .unwrap();
    c.limits().await.unwrap();
    c.availability_zones().await.unwrap();

    let got = counts(&c);
    let want: BTreeMap<(String, String), u64> = [
        (key("identity POST /auth/tokens", "201"), 1),
        (key("compute GET /servers/detail", "200"), 2),
        (key("image GET /images", "200"), 1),
        (key("network GET /ports", "200"), 1),
        (key("network GET /floatingips", "200"), 1),
        (key("network GET /networks", "200"), 3),
        (key("network GET /networks/{id}", "200"), 1),
        (key("network GET /networks/{id}", "404"), 1),
        (key("compute GET /servers/{id}", "404"), 1),
        (key("compute GET /limits", "503"), 1),
        (key("compute GET /limits", "200"), 1),
        (key("compute GET /os-availability-zone", "200"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // The simulator saw exactly these calls, and the total agrees.
    assert_eq!(sim_counts(&sim), want);
    assert_eq!(c.api_calls(), want.values().sum::<u64>());
    assert_eq!(c.call_counter().total(), c.api_calls());
}

#[tokio::test]
async fn a_timeout_and_a_dropped_connection_have_their_own_status_and_retries_count() {
    let sim = sim().await;
    let c = client(&sim, Duration::from_secs(3));
    c.authenticate().await.unwrap();
    // The first port list hangs past the request timeout, the retry succeeds.
    sim.add_fault(fault(
        "GET",
        "/network/v2.0/ports$",
        FaultAction::Hang {
            max_ms: Some(20_000),
        },
    ))
    .unwrap();
    c.list_ports(&PortQuery::default()).await.unwrap();
    // The first image list loses its connection, the retry succeeds.
    sim.add_fault(fault("GET", "/image/v2/images$", FaultAction::Drop))
        .unwrap();
    c.list_images(&ImageQuery::default()).await.unwrap();

    let got = counts(&c);
    let want: BTreeMap<(String, String), u64> = [
        (key("identity POST /auth/tokens", "201"), 1),
        (key("network GET /ports", "timeout"), 1),
        (key("network GET /ports", "200"), 1),
        (key("image GET /images", "error"), 1),
        (key("image GET /images", "200"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // The simulator agrees, call for call (it records the unanswered ones as status 0).
    let mut seen = sim_counts(&sim);
    assert_eq!(
        seen.remove(&key("network GET /ports", "no-answer")),
        Some(1)
    );
    assert_eq!(seen.remove(&key("image GET /images", "no-answer")), Some(1));
    let answered: BTreeMap<_, _> = want
        .iter()
        .filter(|((_, s), _)| s != "timeout" && s != "error")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(seen, answered);
    assert_eq!(c.api_calls(), 5);
}

#[tokio::test]
async fn a_counter_outlives_its_client() {
    let sim = sim().await;
    let c = client(&sim, Duration::from_secs(30));
    let counter = c.call_counter();
    let clone = c.clone();
    c.limits().await.unwrap();
    drop(c);
    assert!(counter.client_alive(), "a clone still holds the client");
    clone.limits().await.unwrap();
    drop(clone);
    assert!(!counter.client_alive());
    let snap = counter.snapshot();
    assert_eq!(
        snap.get(&ApiCall {
            operation: "compute GET /limits".into(),
            status: "200".into()
        }),
        Some(&2)
    );
    assert_eq!(counter.total(), 3);
}
