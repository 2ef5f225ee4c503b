//! The OpenStack client's whole surface as reusable checks, run against any cloud (the real kit, the simulator).
//!
//! Each check takes a [`SurfaceTarget`] (credentials + the names of things the cloud provides),
//! creates uniquely named resources, cleans up after itself, and panics with a clear message on
//! failure. Checks may run in parallel on one cloud: each boots at most one server.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodepool::cloud::{
    ClientOptions, CloudError, CreateImage, CreateServer, FloatingIpQuery, ImageQuery, ImageStatus,
    OpenStackClient, PortQuery, ServerNetworks, ServerQuery, ServerStatus, UploadProgress,
};
use nodepool::config::credentials::{AuthMethod, CloudCredentials};
use nodepool::secret::Secret;

/// A cloud to check, and what it is expected to hold.
#[derive(Clone, Debug)]
pub struct SurfaceTarget {
    /// The non-admin tenant's credentials.
    pub creds: CloudCredentials,
    pub options: ClientOptions,
    /// A bootable flavor (`m1.small`).
    pub flavor: String,
    /// A flavor no host can take, so a boot ends in ERROR with a fault (`m1.nohost`), if any.
    pub unschedulable_flavor: Option<String>,
    /// An existing active image to boot (`cirros-fake`).
    pub image: String,
    /// The tenant network to boot on (`private`).
    pub network: String,
    /// Expected compute quota (instances, cores, ram MB), if known.
    pub quota: Option<(u64, u64, u64)>,
    /// How long a server may take to become ACTIVE or to vanish.
    pub server_timeout: Duration,
}

impl SurfaceTarget {
    pub fn client(&self) -> OpenStackClient {
        OpenStackClient::new(self.creds.clone(), self.options.clone()).expect("client")
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The options tests use: no rate limit, short backoff.
pub fn test_options() -> ClientOptions {
    ClientOptions {
        rate: Duration::ZERO,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Everything logged (all levels, all crates) on this thread while the guard lives: checks that
/// no secret reaches a log line. `#[tokio::test]` runs on one thread, so awaits stay covered.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let cap = Self::default();
        let w = cap.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        (cap, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Authentication (as configured, via a `/v2.0` auth_url mapped to v3, and via an unversioned
/// one) and the catalog's endpoints.
pub async fn auth_and_catalog(t: &SurfaceTarget) {
    let (logs, _guard) = LogCapture::start();
    let c = t.client();
    let info = c.authenticate().await.expect("authenticate");
    assert!(info.project_id.is_some(), "a project-scoped token");
    assert!(
        info.compute_endpoint.is_some()
            && info.image_endpoint.is_some()
            && info.network_endpoint.is_some(),
        "compute, image and network endpoints in the catalog: {info:?}"
    );
    assert!(info.image_endpoint.as_deref().unwrap().ends_with("/v2"));
    assert!(info.network_endpoint.as_deref().unwrap().ends_with("/v2.0"));
    assert!(info.expires_at > chrono::Utc::now());
    // The cached token is reused: one more call costs one request, not two.
    let before = c.api_calls();
    c.list_flavors().await.expect("flavors");
    assert_eq!(c.api_calls(), before + 1, "token reused");
    // Forgetting the token makes the next call authenticate again.
    c.forget_token().await;
    c.list_flavors().await.expect("flavors after re-auth");
    assert_eq!(c.api_calls(), before + 3);

    let v3 = t.creds.auth_url.trim_end_matches('/');
    let root = v3
        .strip_suffix("/v3")
        .expect("the target's auth_url ends in /v3");
    // A v2.0 auth_url (Keystone v2.0 is gone) and an unversioned one both authenticate via v3.
    for variant in [format!("{root}/v2.0"), root.to_owned()] {
        let mut creds = t.creds.clone();
        creds.auth_url = variant.clone();
        let c = OpenStackClient::new(creds, t.options.clone()).expect("client");
        assert_eq!(c.identity_url(), format!("{root}/v3"), "{variant}");
        c.authenticate()
            .await
            .unwrap_or_else(|e| panic!("auth via {variant}: {e}"));
    }
    let logs = logs.text();
    assert!(
        logs.contains("token issued"),
        "debug logs were captured: {logs}"
    );
    assert!(
        logs.contains("Keystone v2.0 was removed"),
        "the v2.0 mapping is announced: {logs}"
    );
    if let AuthMethod::Password { password, .. } = &t.creds.auth {
        assert!(
            !logs.contains(&format!("\"{}\"", password.expose())),
            "password logged: {logs}"
        );
    }
    // Keystone's Fernet tokens start with gAAAAA; none may reach a log line.
    assert!(!logs.contains("gAAAAA"), "token logged: {logs}");
}

/// A wrong password is an `Auth` error naming provider, URL and user, and never the password.
pub async fn bad_password(t: &SurfaceTarget) {
    let (logs, _guard) = LogCapture::start();
    let wrong = unique("not-the-password");
    let mut creds = t.creds.clone();
    match &mut creds.auth {
        AuthMethod::Password { password, .. } => *password = Secret::new(wrong.clone()),
        other => panic!("bad_password needs password credentials, not {other:?}"),
    }
    let c = OpenStackClient::new(creds, t.options.clone()).expect("client");
    let err = c
        .list_servers(&ServerQuery::default())
        .await
        .expect_err("a wrong password must fail");
    let text = err.to_string();
    let debug = format!("{err:?}");
    assert!(
        matches!(err, CloudError::Auth { .. }),
        "Auth error, got {debug}"
    );
    assert!(text.contains(&t.creds.source), "names the provider: {text}");
    assert!(text.contains("/v3"), "names the auth URL: {text}");
    if let AuthMethod::Password {
        username: Some(u), ..
    } = &t.creds.auth
    {
        assert!(text.contains(u.as_str()), "names the user: {text}");
    }
    assert!(
        !text.contains(&wrong) && !debug.contains(&wrong),
        "the password leaked: {debug}"
    );
    assert!(!logs.text().contains(&wrong), "the password was logged");
}

/// Flavors, absolute limits (quota and usage) and availability zones.
pub async fn flavors_limits_zones(t: &SurfaceTarget) {
    let c = t.client();
    let flavors = c.list_flavors().await.expect("flavors");
    let small = flavors
        .iter()
        .find(|f| f.name == t.flavor)
        .unwrap_or_else(|| panic!("flavor {} in {flavors:?}", t.flavor));
    assert!(small.vcpus >= 1 && small.ram_mb >= 1);
    let limits = c.limits().await.expect("limits");
    if let Some((instances, cores, ram)) = t.quota {
        assert_eq!(limits.instances.limit, Some(instances), "{limits:?}");
        assert_eq!(limits.cores.limit, Some(cores), "{limits:?}");
        assert_eq!(limits.ram_mb.limit, Some(ram), "{limits:?}");
    }
    assert!(limits.instances.used <= limits.instances.limit.unwrap_or(u64::MAX));
    let zones = c.availability_zones().await.expect("zones");
    assert!(
        zones.iter().any(|z| z.available),
        "an available zone in {zones:?}"
    );
}

/// Image create with properties, streamed upload with progress, get (active), list by property
/// and by pages, a rejected upload (Glance's HTML error body), delete, then 404.
pub async fn image_lifecycle(t: &SurfaceTarget, qcow2: &Path) {
    let c = t.client();
    let run = unique("run");
    let mut req = CreateImage::new(unique("np-surface-img"), "qcow2");
    req.properties
        .insert("nodepool_test_run".into(), run.clone());
    req.properties
        .insert("nodepool_build_id".into(), "0001".into());
    let img = c.create_image(&req).await.expect("create image");
    assert_eq!(img.status, ImageStatus::Queued);
    assert_eq!(img.visibility.as_deref(), Some("private"));
    assert_eq!(img.properties.get("nodepool_test_run"), Some(&run));

    let seen: Arc<Mutex<Vec<UploadProgress>>> = Arc::default();
    let seen2 = seen.clone();
    c.upload_image(
        &img.id,
        qcow2,
        Some(Arc::new(move |p| seen2.lock().unwrap().push(p))),
    )
    .await
    .expect("upload");
    let size = std::fs::metadata(qcow2).unwrap().len();
    let last = *seen.lock().unwrap().last().expect("progress reported");
    assert_eq!(
        last,
        UploadProgress {
            sent: size,
            total: size
        }
    );

    let active = eventually("image active", Duration::from_secs(60), || async {
        let i = c.get_image(&img.id).await.expect("get image");
        (i.status == ImageStatus::Active).then_some(i)
    })
    .await;
    assert_eq!(active.size, Some(size));
    assert!(
        active.checksum.as_deref().is_some_and(|s| s.len() == 32),
        "{active:?}"
    );
    assert_eq!(
        active
            .properties
            .get("nodepool_build_id")
            .map(String::as_str),
        Some("0001")
    );

    let mut q = ImageQuery::default();
    q.properties.insert("nodepool_test_run".into(), run.clone());
    let found = c.list_images(&q).await.expect("list by property");
    assert_eq!(
        found.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [img.id.as_str()]
    );
    let all = c.list_images(&ImageQuery::default()).await.expect("list");
    let paged = c
        .list_images(&ImageQuery {
            page_size: Some(1),
            ..Default::default()
        })
        .await
        .expect("list by pages");
    assert!(paged.len() >= 2, "at least the target's image and ours");
    let mut paged_ids: Vec<&str> = paged.iter().map(|i| i.id.as_str()).collect();
    paged_ids.sort();
    paged_ids.dedup();
    assert_eq!(paged_ids.len(), paged.len(), "no image twice across pages");
    // Others may add images meanwhile; ours and the target's must be in both listings.
    for listing in [&all, &paged] {
        assert!(listing.iter().any(|i| i.id == img.id));
        assert!(
            listing
                .iter()
                .any(|i| i.name.as_deref() == Some(t.image.as_str()))
        );
    }

    // Glance inspects content: raw bytes are not a qcow2 (webob error body, JSON or HTML).
    let bad = CreateImage::new(unique("np-surface-bad"), "qcow2");
    let bad_img = c.create_image(&bad).await.expect("create");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.img");
    std::fs::write(&raw, vec![0u8; 64 * 1024]).unwrap();
    match c.upload_image(&bad_img.id, &raw, None).await {
        Err(CloudError::Rejected {
            status, message, ..
        }) => {
            assert_eq!(status, 415);
            assert!(
                message.contains("does not match") && !message.contains('<'),
                "{message}"
            );
        }
        other => panic!("raw data into a qcow2 image must be rejected, got {other:?}"),
    }
    c.delete_image(&bad_img.id)
        .await
        .expect("delete rejected image");

    c.delete_image(&img.id).await.expect("delete image");
    match c.get_image(&img.id).await {
        Err(CloudError::NotFound { message, .. }) => assert!(!message.contains('<'), "{message}"),
        // Some Glance versions keep a deleted image visible briefly.
        Ok(i) => assert!(
            matches!(i.status, ImageStatus::Deleted | ImageStatus::PendingDelete),
            "{i:?}"
        ),
        Err(e) => panic!("get after delete: {e}"),
    }
    assert!(c.delete_image(&img.id).await.unwrap_err().is_not_found());
}

/// Server create (every option nodepool uses) → ACTIVE → list (by pages, changes-since) →
/// console → floating IP attach/detach on its port → delete → gone.
pub async fn server_lifecycle(t: &SurfaceTarget) {
    let c = t.client();
    let flavor = c
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == t.flavor)
        .expect("flavor");
    let image = c
        .list_images(&ImageQuery {
            name: Some(t.image.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("image {}", t.image));
    let net = c.find_network(&t.network).await.expect("network by name");
    let zone = c
        .availability_zones()
        .await
        .unwrap()
        .into_iter()
        .find(|z| z.available)
        .expect("zone");
    let started = chrono::Utc::now() - chrono::Duration::seconds(60);

    let name = unique("np-surface");
    let mut req = CreateServer::new(&name, &flavor.id, &image.id);
    req.networks = ServerNetworks::Ids(vec![net.id.clone()]);
    req.availability_zone = Some(zone.name.clone());
    req.user_data = Some("#cloud-config\nhostname: np\n".into());
    req.config_drive = true;
    req.metadata = BTreeMap::from([
        ("nodepool_node_id".to_owned(), "0000000042".to_owned()),
        ("nodepool_provider_name".to_owned(), "surface".to_owned()),
    ]);
    req.security_groups = vec!["default".into()];
    let id = c.create_server(&req).await.expect("create server");

    let server = eventually("server ACTIVE", t.server_timeout, || async {
        let s = c.get_server(&id).await.expect("get server");
        assert_ne!(s.status, ServerStatus::Error, "boot failed: {:?}", s.fault);
        (s.status == ServerStatus::Active).then_some(s)
    })
    .await;
    assert_eq!(server.name, name);
    assert_eq!(server.metadata, req.metadata);
    assert_eq!(server.image_id.as_deref(), Some(image.id.as_str()));
    assert_eq!(
        server.flavor.vcpus,
        Some(flavor.vcpus),
        "flavor embedded (2.47+)"
    );
    assert_eq!(
        server.availability_zone.as_deref(),
        Some(zone.name.as_str())
    );
    assert!(
        server.private_ipv4.is_some(),
        "a fixed IP on {}: {:?}",
        t.network,
        server.addresses
    );
    assert!(server.created.is_some_and(|c| c >= started));

    let listed = c
        .list_servers(&ServerQuery {
            page_size: Some(1),
            ..Default::default()
        })
        .await
        .expect("list by pages");
    assert!(listed.iter().any(|s| s.id == id), "listed across pages");
    let all = c.list_servers(&ServerQuery::default()).await.expect("list");
    assert_eq!(
        {
            let mut v: Vec<_> = listed.iter().map(|s| &s.id).collect();
            v.sort();
            v.dedup();
            v.len()
        },
        listed.len(),
        "no server twice across pages"
    );
    assert!(all.iter().any(|s| s.id == id));
    let changed = c
        .list_servers(&ServerQuery {
            changes_since: Some(started),
            ..Default::default()
        })
        .await
        .expect("changes-since");
    assert!(changed.iter().any(|s| s.id == id));

    let console = c.console_output(&id, Some(10)).await.expect("console");
    assert!(!console.is_empty());

    // Its port, and a floating IP attached to it, then detached.
    let ports = c
        .list_ports(&PortQuery {
            device_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .expect("ports");
    let port = ports
        .first()
        .unwrap_or_else(|| panic!("a port for server {id}"));
    assert!(port.device_owner.starts_with("compute:"), "{port:?}");
    let by_owner = c
        .list_ports(&PortQuery {
            device_owner: Some(port.device_owner.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_owner.iter().any(|p| p.id == port.id));
    let ext = c
        .list_networks(None, true)
        .await
        .expect("external networks");
    let ext = ext.first().expect("an external network");
    let fip = c
        .create_floating_ip(&ext.id, None)
        .await
        .expect("floating ip");
    let attached = c
        .attach_floating_ip(&fip.id, &port.id)
        .await
        .expect("attach");
    assert_eq!(attached.port_id.as_deref(), Some(port.id.as_str()));
    let fip_addr: std::net::IpAddr = fip.floating_ip_address.parse().unwrap();
    eventually(
        "floating IP in the server's addresses",
        Duration::from_secs(30),
        || async {
            let s = c.get_server(&id).await.unwrap();
            (s.public_ipv4 == Some(fip_addr)).then_some(())
        },
    )
    .await;
    let detached = c.detach_floating_ip(&fip.id).await.expect("detach");
    assert_eq!(detached.port_id, None);
    c.delete_floating_ip(&fip.id).await.expect("delete fip");

    c.delete_server(&id).await.expect("delete server");
    eventually("server gone", t.server_timeout, || async {
        match c.get_server(&id).await {
            Err(e) if e.is_not_found() => Some(()),
            Ok(_) => None,
            Err(e) => panic!("get after delete: {e}"),
        }
    })
    .await;
    let err = c.delete_server(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let after = c
        .list_servers(&ServerQuery {
            changes_since: Some(started),
            ..Default::default()
        })
        .await
        .unwrap();
    if let Some(s) = after.iter().find(|s| s.id == id) {
        assert_eq!(
            s.status,
            ServerStatus::Deleted,
            "changes-since shows deleted servers as DELETED"
        );
    }
}

/// A boot no host can take ends in ERROR with a fault (not a quota one).
pub async fn server_fault(t: &SurfaceTarget) {
    let Some(flavor_name) = &t.unschedulable_flavor else {
        return;
    };
    let c = t.client();
    let flavor = c
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .find(|f| &f.name == flavor_name)
        .expect("flavor");
    let image = c
        .list_images(&ImageQuery {
            name: Some(t.image.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let mut req = CreateServer::new(unique("np-surface-fault"), &flavor.id, &image.id);
    req.networks = ServerNetworks::None;
    let id = c.create_server(&req).await.expect("create");
    let s = eventually("server ERROR", t.server_timeout, || async {
        let s = c.get_server(&id).await.unwrap();
        (s.status == ServerStatus::Error).then_some(s)
    })
    .await;
    let fault = s.fault.expect("a fault");
    assert!(fault.message.contains("No valid host"), "{fault:?}");
    assert!(!fault.is_quota());
    c.delete_server(&id).await.expect("delete");
}

/// Asking for more servers than the quota allows is a typed `QuotaExceeded` (and boots nothing).
pub async fn quota_exceeded(t: &SurfaceTarget) {
    let c = t.client();
    let limits = c.limits().await.unwrap();
    let max = limits.instances.limit.expect("a finite instance quota");
    let flavor = c
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == t.flavor)
        .expect("flavor");
    let image = c
        .list_images(&ImageQuery {
            name: Some(t.image.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let name = unique("np-surface-quota");
    let mut req = CreateServer::new(&name, &flavor.id, &image.id);
    req.networks = ServerNetworks::None;
    req.min_count = Some(u32::try_from(max + 1).unwrap());
    let err = c.create_server(&req).await.expect_err("over quota");
    match &err {
        CloudError::QuotaExceeded { message, .. } => {
            assert!(
                message
                    .to_ascii_lowercase()
                    .contains("quota exceeded for instances"),
                "{message}"
            )
        }
        other => panic!("QuotaExceeded expected, got {other:?}"),
    }
    let leftovers = c
        .list_servers(&ServerQuery {
            name: Some(name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(leftovers.is_empty(), "nothing booted: {leftovers:?}");
}

/// Floating IPs: allocate on the external network (unattached, DOWN), list by filter, delete, 404.
pub async fn floating_ips(t: &SurfaceTarget) {
    let c = t.client();
    let ext = c
        .list_networks(None, true)
        .await
        .expect("external networks");
    let ext = ext.first().expect("an external network");
    assert!(ext.external);
    let fip = c.create_floating_ip(&ext.id, None).await.expect("create");
    assert_eq!(fip.port_id, None);
    assert_eq!(fip.floating_network_id, ext.id);
    let listed = c
        .list_floating_ips(&FloatingIpQuery {
            floating_ip_address: Some(fip.floating_ip_address.clone()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, fip.id);
    let unattached = c
        .list_floating_ips(&FloatingIpQuery::default())
        .await
        .unwrap();
    assert!(
        unattached
            .iter()
            .any(|f| f.id == fip.id && f.port_id.is_none() && f.status == "DOWN"),
        "{unattached:?}"
    );
    c.delete_floating_ip(&fip.id).await.expect("delete");
    let err = c.delete_floating_ip(&fip.id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// A bare port is DOWN and found by `status=DOWN`; delete, then 404. Unknown network names are
/// `NotFound`.
pub async fn ports_down(t: &SurfaceTarget) {
    let c = t.client();
    let net = c.find_network(&t.network).await.expect("network");
    let name = unique("np-surface-port");
    let port = c.create_port(&net.id, &name).await.expect("create port");
    assert_eq!(port.device_id, "");
    let down = c
        .list_ports(&PortQuery {
            status: Some("DOWN".into()),
            ..Default::default()
        })
        .await
        .expect("DOWN ports");
    assert!(down.iter().any(|p| p.id == port.id), "{down:?}");
    assert!(down.iter().all(|p| p.status == "DOWN"));
    c.delete_port(&port.id).await.expect("delete port");
    assert!(c.delete_port(&port.id).await.unwrap_err().is_not_found());
    let missing = c.find_network(&unique("no-such-net")).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
}

/// `doctor` on a healthy tenant: every check passes, the real quota is reported, and nothing
/// secret reaches the JSON. With a wrong password: a failed verdict explaining the auth error.
pub async fn doctor(t: &SurfaceTarget) {
    use nodepool::cloud::doctor::{Verdict, doctor};
    let c = t.client();
    let report = doctor(&c).await;
    let json = serde_json::to_string_pretty(&report).unwrap();
    assert_ne!(report.verdict, Verdict::Failed, "{json}");
    assert!(report.checks.iter().all(|c| c.ok), "{json}");
    assert!(report.checks.len() >= 9, "{json}");
    assert_eq!(report.checks[0].call, "POST /v3/auth/tokens");
    let quota = report.quota.expect("quota");
    if let Some((instances, cores, ram)) = t.quota {
        assert_eq!(
            (quota.instances.limit, quota.cores.limit, quota.ram_mb.limit),
            (Some(instances), Some(cores), Some(ram))
        );
    }
    assert!(
        report.counts.servers.is_some() && report.counts.down_ports.is_some(),
        "{json}"
    );

    let wrong = unique("wrong");
    let mut creds = t.creds.clone();
    if let AuthMethod::Password { password, .. } = &mut creds.auth {
        *password = Secret::new(wrong.clone());
    }
    let bad = doctor(&OpenStackClient::new(creds, t.options.clone()).unwrap()).await;
    let json = serde_json::to_string(&bad).unwrap();
    assert_eq!(bad.verdict, Verdict::Failed);
    assert!(
        bad.explanation.starts_with("authentication failed for "),
        "{}",
        bad.explanation
    );
    assert!(bad.explanation.contains(&t.creds.source));
    assert!(!json.contains(&wrong), "{json}");
}
