//! Nova (compute v2.1): servers, flavors, absolute limits and availability zones.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Call, Link, OpenStackClient, Retry, next_of};
use super::error::{CloudError, Service};

wire_status! {
    /// Nova's server status (`status` field); `Other` for `REBOOT`, `RESIZE`, `SOFT_DELETED`,
    /// `UNKNOWN`, ...
    pub enum ServerStatus {
        Build = "BUILD",
        Active = "ACTIVE",
        Error = "ERROR",
        Deleted = "DELETED",
        Shutoff = "SHUTOFF",
    }
}

/// Why a server is in ERROR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub created: Option<String>,
}

impl ServerFault {
    /// Nodepool treats a boot that failed for quota like a quota error at create time.
    pub fn is_quota(&self) -> bool {
        self.message.to_ascii_lowercase().contains("quota")
    }
}

/// The flavor of a server: embedded (2.47+: sizes, no id) or a reference (older: id only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerFlavor {
    pub id: Option<String>,
    pub original_name: Option<String>,
    pub vcpus: Option<u32>,
    pub ram_mb: Option<u64>,
    pub disk_gb: Option<u64>,
}

/// One address of a server as Nova reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerAddress {
    pub network: String,
    pub addr: IpAddr,
    /// `fixed` or `floating` (`OS-EXT-IPS:type`), when reported.
    pub kind: Option<String>,
}

/// A server, as much of it as the reconciler needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub task_state: Option<String>,
    pub addresses: Vec<ServerAddress>,
    /// Floating IPv4, else a fixed IPv4 outside the private ranges.
    pub public_ipv4: Option<IpAddr>,
    /// A global IPv6 address.
    pub public_ipv6: Option<IpAddr>,
    /// A fixed IPv4 in a private range.
    pub private_ipv4: Option<IpAddr>,
    pub metadata: BTreeMap<String, String>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub flavor: ServerFlavor,
    /// Image id; `None` when booted from a volume.
    pub image_id: Option<String>,
    pub fault: Option<ServerFault>,
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
}

#[derive(Deserialize)]
struct WireServer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default, rename = "OS-EXT-STS:task_state")]
    task_state: Option<String>,
    #[serde(default)]
    addresses: BTreeMap<String, Vec<WireAddress>>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    updated: Option<DateTime<Utc>>,
    #[serde(default)]
    flavor: Option<WireServerFlavor>,
    /// An object `{id, links}`, or `""` when booted from a volume.
    #[serde(default)]
    image: Value,
    #[serde(default)]
    fault: Option<ServerFault>,
    #[serde(default, rename = "OS-EXT-AZ:availability_zone")]
    availability_zone: Option<String>,
    #[serde(default)]
    key_name: Option<String>,
}

#[derive(Deserialize)]
struct WireAddress {
    addr: String,
    #[serde(default, rename = "OS-EXT-IPS:type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct WireServerFlavor {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    original_name: Option<String>,
    #[serde(default)]
    vcpus: Option<u32>,
    #[serde(default)]
    ram: Option<u64>,
    #[serde(default)]
    disk: Option<u64>,
}

fn is_private_v6(a: &Ipv6Addr) -> bool {
    let first = a.segments()[0];
    a.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

impl From<WireServer> for Server {
    fn from(w: WireServer) -> Self {
        let mut addresses = Vec::new();
        for (network, addrs) in w.addresses {
            for a in addrs {
                if let Ok(addr) = a.addr.parse::<IpAddr>() {
                    addresses.push(ServerAddress {
                        network: network.clone(),
                        addr,
                        kind: a.kind,
                    });
                }
            }
        }
        let floating_v4 = addresses
            .iter()
            .find(|a| a.addr.is_ipv4() && a.kind.as_deref() == Some("floating"))
            .map(|a| a.addr);
        let fixed_v4 = |private: bool| {
            addresses
                .iter()
                .filter(|a| a.kind.as_deref() != Some("floating"))
                .find(|a| matches!(a.addr, IpAddr::V4(v4) if v4.is_private() == private))
                .map(|a| a.addr)
        };
        let public_ipv4 = floating_v4.or_else(|| fixed_v4(false));
        let private_ipv4 = fixed_v4(true);
        let public_ipv6 = addresses
            .iter()
            .find(|a| matches!(a.addr, IpAddr::V6(v6) if !is_private_v6(&v6)))
            .map(|a| a.addr);
        let image_id = match &w.image {
            Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let flavor = w
            .flavor
            .map_or_else(ServerFlavor::default, |f| ServerFlavor {
                id: f.id,
                original_name: f.original_name,
                vcpus: f.vcpus,
                ram_mb: f.ram,
                disk_gb: f.disk,
            });
        Server {
            id: w.id,
            name: w.name,
            status: ServerStatus::from(w.status.as_str()),
            task_state: w.task_state,
            addresses,
            public_ipv4,
            public_ipv6,
            private_ipv4,
            metadata: w.metadata,
            created: w.created,
            updated: w.updated,
            flavor,
            image_id,
            fault: w.fault,
            availability_zone: w.availability_zone.filter(|z| !z.is_empty()),
            key_name: w.key_name,
        }
    }
}

/// The networks of a new server (required from microversion 2.37).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerNetworks {
    /// Nova picks (or auto-allocates) a network: openstacksdk's default.
    Auto,
    /// No network at all.
    None,
    /// These network ids, one NIC each.
    Ids(Vec<String>),
}

/// Boot from a new volume made from the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootVolume {
    pub size_gb: u32,
    pub delete_on_termination: bool,
}

/// `POST /servers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateServer {
    pub name: String,
    pub flavor_id: String,
    pub image_id: String,
    pub networks: ServerNetworks,
    pub key_name: Option<String>,
    pub availability_zone: Option<String>,
    /// Plain text; sent base64-encoded.
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub metadata: BTreeMap<String, String>,
    /// Security group names.
    pub security_groups: Vec<String>,
    pub boot_volume: Option<BootVolume>,
    /// Nova multi-create (`min_count`): all or nothing. Nodepool boots one server per call, so
    /// this stays `None` there; tools and tests use it (e.g. to ask for more than the quota).
    pub min_count: Option<u32>,
}

impl CreateServer {
    pub fn new(
        name: impl Into<String>,
        flavor_id: impl Into<String>,
        image_id: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            flavor_id: flavor_id.into(),
            image_id: image_id.into(),
            networks: ServerNetworks::Auto,
            key_name: None,
            availability_zone: None,
            user_data: None,
            config_drive: false,
            metadata: BTreeMap::new(),
            security_groups: Vec::new(),
            boot_volume: None,
            min_count: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut s = serde_json::Map::new();
        s.insert("name".into(), json!(self.name));
        s.insert("flavorRef".into(), json!(self.flavor_id));
        let networks = match &self.networks {
            ServerNetworks::Auto => json!("auto"),
            ServerNetworks::None => json!("none"),
            ServerNetworks::Ids(ids) => {
                Value::Array(ids.iter().map(|id| json!({ "uuid": id })).collect())
            }
        };
        s.insert("networks".into(), networks);
        match &self.boot_volume {
            None => {
                s.insert("imageRef".into(), json!(self.image_id));
            }
            Some(v) => {
                s.insert(
                    "block_device_mapping_v2".into(),
                    json!([{
                        "boot_index": 0,
                        "uuid": self.image_id,
                        "source_type": "image",
                        "destination_type": "volume",
                        "volume_size": v.size_gb,
                        "delete_on_termination": v.delete_on_termination,
                    }]),
                );
            }
        }
        if let Some(k) = &self.key_name {
            s.insert("key_name".into(), json!(k));
        }
        if let Some(az) = &self.availability_zone {
            s.insert("availability_zone".into(), json!(az));
        }
        if let Some(ud) = &self.user_data {
            s.insert(
                "user_data".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(ud.as_bytes())),
            );
        }
        if self.config_drive {
            s.insert("config_drive".into(), json!(true));
        }
        if !self.metadata.is_empty() {
            s.insert("metadata".into(), json!(self.metadata));
        }
        if !self.security_groups.is_empty() {
            s.insert(
                "security_groups".into(),
                Value::Array(
                    self.security_groups
                        .iter()
                        .map(|n| json!({ "name": n }))
                        .collect(),
                ),
            );
        }
        if let Some(n) = self.min_count {
            s.insert("min_count".into(), json!(n));
        }
        json!({ "server": s })
    }
}

/// Filters of `GET /servers/detail`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerQuery {
    /// Servers changed since then, DELETED ones included.
    pub changes_since: Option<DateTime<Utc>>,
    /// A regular expression on the name (Nova semantics).
    pub name: Option<String>,
    pub status: Option<String>,
    /// Page size; `None` lets Nova choose (its `max_limit`, 1000 by default).
    pub page_size: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub ephemeral_gb: u64,
    pub is_public: bool,
    pub disabled: bool,
}

#[derive(Deserialize)]
struct WireFlavor {
    id: String,
    name: String,
    vcpus: u32,
    ram: u64,
    #[serde(default)]
    disk: u64,
    #[serde(default, rename = "OS-FLV-EXT-DATA:ephemeral")]
    ephemeral: u64,
    #[serde(default = "yes", rename = "os-flavor-access:is_public")]
    is_public: bool,
    #[serde(default, rename = "OS-FLV-DISABLED:disabled")]
    disabled: bool,
}

fn yes() -> bool {
    true
}

/// One quota: the limit (`None` = unlimited) and what is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub limit: Option<u64>,
    pub used: u64,
}

impl Quota {
    fn from_wire(limit: Option<i64>, used: Option<i64>) -> Self {
        Quota {
            limit: limit.and_then(|l| u64::try_from(l).ok()),
            used: used.and_then(|u| u64::try_from(u).ok()).unwrap_or(0),
        }
    }

    /// What is left (`None` = unlimited).
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used))
    }
}

/// Nova's absolute limits of the project: the quota nodepool schedules against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub instances: Quota,
    pub cores: Quota,
    pub ram_mb: Quota,
}

#[derive(Deserialize)]
struct WireLimits {
    limits: WireLimitsInner,
}

#[derive(Deserialize)]
struct WireLimitsInner {
    absolute: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AvailabilityZone {
    pub name: String,
    pub available: bool,
}

#[derive(Deserialize)]
struct ServersPage {
    servers: Vec<WireServer>,
    #[serde(default)]
    servers_links: Vec<Link>,
}

#[derive(Deserialize)]
struct FlavorsPage {
    flavors: Vec<WireFlavor>,
    #[serde(default)]
    flavors_links: Vec<Link>,
}

/// An id as one path segment: percent-encoded, and never empty or a dot segment (which would
/// turn `DELETE /servers/{id}` into a call on another resource).
pub(crate) fn path_id(id: &str) -> Result<String, CloudError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(CloudError::InvalidRequest {
            message: format!("{id:?} is not a resource id"),
        });
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

impl OpenStackClient {
    /// `GET /servers/detail`, every page.
    pub async fn list_servers(&self, q: &ServerQuery) -> Result<Vec<Server>, CloudError> {
        let mut query = Vec::new();
        if let Some(t) = q.changes_since {
            query.push((
                "changes-since".into(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        if let Some(n) = &q.name {
            query.push(("name".into(), n.clone()));
        }
        if let Some(s) = &q.status {
            query.push(("status".into(), s.clone()));
        }
        if let Some(l) = q.page_size {
            query.push(("limit".into(), l.to_string()));
        }
        let wire = self
            .paginate(
                Service::Compute,
                "/servers/detail",
                query,
                |p: ServersPage| (p.servers, next_of(&p.servers_links)),
            )
            .await?;
        Ok(wire.into_iter().map(Server::from).collect())
    }

    pub async fn get_server(&self, id: &str) -> Result<Server, CloudError> {
        #[derive(Deserialize)]
        struct One {
            server: WireServer,
        }
        let path = format!("/servers/{}", path_id(id)?);
        let one: One = self.send_json(Call::get(Service::Compute, &path)).await?;
        Ok(one.server.into())
    }

    /// `POST /servers`; returns the new server's id. Not retried after an ambiguous failure
    /// (timeout, 5xx): a second POST could boot a second server. The caller finds out what
    /// happened by listing servers and matching the metadata it set.
    pub async fn create_server(&self, req: &CreateServer) -> Result<String, CloudError> {
        #[derive(Deserialize)]
        struct Created {
            server: CreatedServer,
        }
        #[derive(Deserialize)]
        struct CreatedServer {
            id: String,
        }
        let body = req.to_json();
        let created: Created = self
            .send_json(Call::json(
                Service::Compute,
                Method::POST,
                "/servers",
                &body,
                Retry::Unsafe,
            ))
            .await?;
        Ok(created.server.id)
    }

    /// `DELETE /servers/{id}`; `NotFound` means it is already gone.
    pub async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        let path = format!("/servers/{}", path_id(id)?);
        self.send_empty(Call::delete(Service::Compute, &path)).await
    }

    /// The last `lines` lines of the console log (all of it when `None`).
    pub async fn console_output(&self, id: &str, lines: Option<u32>) -> Result<String, CloudError> {
        #[derive(Deserialize)]
        struct Output {
            output: String,
        }
        let path = format!("/servers/{}/action", path_id(id)?);
        let body = match lines {
            Some(n) => json!({ "os-getConsoleOutput": { "length": n } }),
            None => json!({ "os-getConsoleOutput": {} }),
        };
        // A read despite being a POST: safe to repeat.
        let out: Output = self
            .send_json(Call::json(
                Service::Compute,
                Method::POST,
                &path,
                &body,
                Retry::Idempotent,
            ))
            .await?;
        Ok(out.output)
    }

    /// `GET /flavors/detail`, every page.
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>, CloudError> {
        let wire = self
            .paginate(
                Service::Compute,
                "/flavors/detail",
                Vec::new(),
                |p: FlavorsPage| (p.flavors, next_of(&p.flavors_links)),
            )
            .await?;
        Ok(wire
            .into_iter()
            .map(|f| Flavor {
                id: f.id,
                name: f.name,
                vcpus: f.vcpus,
                ram_mb: f.ram,
                disk_gb: f.disk,
                ephemeral_gb: f.ephemeral,
                is_public: f.is_public,
                disabled: f.disabled,
            })
            .collect())
    }

    /// `GET /limits`: the project's compute quota and usage.
    pub async fn limits(&self) -> Result<Limits, CloudError> {
        let w: WireLimits = self
            .send_json(Call::get(Service::Compute, "/limits"))
            .await?;
        Ok(limits_from(&w.limits.absolute))
    }

    /// `GET /os-availability-zone`.
    pub async fn availability_zones(&self) -> Result<Vec<AvailabilityZone>, CloudError> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "availabilityZoneInfo")]
            zones: Vec<Zone>,
        }
        #[derive(Deserialize)]
        struct Zone {
            #[serde(rename = "zoneName")]
            name: String,
            #[serde(rename = "zoneState", default)]
            state: Option<ZoneState>,
        }
        #[derive(Deserialize)]
        struct ZoneState {
            #[serde(default)]
            available: bool,
        }
        let info: Info = self
            .send_json(Call::get(Service::Compute, "/os-availability-zone"))
            .await?;
        Ok(info
            .zones
            .into_iter()
            .map(|z| AvailabilityZone {
                available: z.state.is_some_and(|s| s.available),
                name: z.name,
            })
            .collect())
    }
}

fn limits_from(abs: &BTreeMap<String, Value>) -> Limits {
    let get = |k: &str| abs.get(k).and_then(Value::as_i64);
    Limits {
        instances: Quota::from_wire(get("maxTotalInstances"), get("totalInstancesUsed")),
        cores: Quota::from_wire(get("maxTotalCores"), get("totalCoresUsed")),
        ram_mb: Quota::from_wire(get("maxTotalRAMSize"), get("totalRAMUsed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// api-surface.md §2, the 2.1 shape (flavor by reference) with api-ref addresses.
    const SERVER_21: &str = r#"{"id": "c510a171-00a9-423b-9cf1-56b4d90eaf33", "name": "np-0000000002", "status": "ACTIVE",
      "tenant_id": "4c1a", "user_id": "9f2e",
      "metadata": {"nodepool_node_id": "0000000002", "nodepool_provider_name": "p1"},
      "hostId": "3bb0fa", "image": {"id": "6491c0b7", "links": [{"rel": "bookmark", "href": "x"}]},
      "flavor": {"id": "a060be0d", "links": [{"rel": "bookmark", "href": "x"}]},
      "created": "2026-11-23T23:22:53Z", "updated": "2026-11-23T23:22:55Z",
      "addresses": {"private": [
        {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
        {"version": 6, "addr": "fd00::5", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
        {"version": 6, "addr": "2001:db8::5", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
        {"version": 4, "addr": "172.24.4.10", "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]},
      "accessIPv4": "", "accessIPv6": "", "links": [], "progress": 0, "config_drive": "True", "key_name": null,
      "OS-DCF:diskConfig": "MANUAL", "OS-EXT-AZ:availability_zone": "nova",
      "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:task_state": null, "OS-EXT-STS:power_state": 1,
      "os-extended-volumes:volumes_attached": []}"#;

    #[test]
    fn server_at_2_1() {
        let s: Server = serde_json::from_str::<WireServer>(SERVER_21)
            .unwrap()
            .into();
        assert_eq!(s.status, ServerStatus::Active);
        // 172.24/16 is private by RFC 1918 but floating: public.
        assert_eq!(s.public_ipv4, Some("172.24.4.10".parse().unwrap()));
        assert_eq!(s.private_ipv4, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(s.public_ipv6, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(s.flavor.id.as_deref(), Some("a060be0d"));
        assert_eq!(s.image_id.as_deref(), Some("6491c0b7"));
        assert_eq!(s.metadata["nodepool_node_id"], "0000000002");
        assert_eq!(s.availability_zone.as_deref(), Some("nova"));
        assert_eq!(s.created.unwrap().to_rfc3339(), "2026-11-23T23:22:53+00:00");
        assert!(s.fault.is_none());
    }

    #[test]
    fn server_at_2_79_error_and_volume_boot() {
        let json = r#"{"id": "x1", "name": "np-1", "status": "ERROR", "image": "",
          "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.small", "extra_specs": {}},
          "fault": {"code": 500, "created": "2026-11-23T23:22:55Z", "message": "No valid host was found. ", "details": "trace"},
          "addresses": {}, "metadata": {}, "OS-EXT-AZ:availability_zone": "", "OS-EXT-STS:task_state": null,
          "locked": false, "tags": [], "description": null}"#;
        let s: Server = serde_json::from_str::<WireServer>(json).unwrap().into();
        assert_eq!(s.status, ServerStatus::Error);
        assert_eq!(s.image_id, None);
        assert_eq!(s.flavor.vcpus, Some(1));
        assert_eq!(s.flavor.ram_mb, Some(512));
        assert_eq!(s.flavor.original_name.as_deref(), Some("m1.small"));
        assert_eq!(s.flavor.id, None);
        let fault = s.fault.unwrap();
        assert_eq!(fault.code, Some(500));
        assert!(!fault.is_quota());
        assert!(
            ServerFault {
                code: None,
                message: "Quota exceeded for cores".into(),
                created: None
            }
            .is_quota()
        );
        assert_eq!(s.availability_zone, None);
        assert_eq!(s.public_ipv4, None);
    }

    #[test]
    fn fixed_public_v4_without_floating() {
        let json =
            r#"{"id": "x", "addresses": {"public": [{"version": 4, "addr": "203.0.113.9"}]}}"#;
        let s: Server = serde_json::from_str::<WireServer>(json).unwrap().into();
        assert_eq!(s.public_ipv4, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(s.private_ipv4, None);
        assert_eq!(s.status, ServerStatus::Other(String::new()));
    }

    #[test]
    fn servers_page_with_next_link() {
        let page: ServersPage = serde_json::from_str(&format!(
            r#"{{"servers": [{SERVER_21}], "servers_links": [{{"rel": "next", "href": "http://127.0.0.1:8774/v2.1/servers/detail?limit=1&marker=c510a171"}}]}}"#
        ))
        .unwrap();
        assert_eq!(page.servers.len(), 1);
        assert!(
            next_of(&page.servers_links)
                .unwrap()
                .ends_with("marker=c510a171")
        );
    }

    #[test]
    fn create_server_body() {
        let mut req = CreateServer::new("np-0000000002", "a060be0d", "6491c0b7");
        req.networks = ServerNetworks::Ids(vec!["net1".into()]);
        req.key_name = Some("k".into());
        req.availability_zone = Some("nova".into());
        req.user_data = Some("#cloud-config\n".into());
        req.config_drive = true;
        req.metadata
            .insert("nodepool_node_id".into(), "0000000002".into());
        req.security_groups = vec!["default".into()];
        assert_eq!(
            req.to_json(),
            json!({"server": {"name": "np-0000000002", "flavorRef": "a060be0d", "networks": [{"uuid": "net1"}],
                "imageRef": "6491c0b7", "key_name": "k", "availability_zone": "nova",
                "user_data": "I2Nsb3VkLWNvbmZpZwo=", "config_drive": true,
                "metadata": {"nodepool_node_id": "0000000002"}, "security_groups": [{"name": "default"}]}})
        );
        let mut bfv = CreateServer::new("n", "f", "img");
        bfv.networks = ServerNetworks::None;
        bfv.boot_volume = Some(BootVolume {
            size_gb: 40,
            delete_on_termination: true,
        });
        let j = bfv.to_json();
        assert_eq!(j["server"]["networks"], json!("none"));
        assert!(j["server"].get("imageRef").is_none());
        assert_eq!(
            j["server"]["block_device_mapping_v2"],
            json!([{"boot_index": 0, "uuid": "img", "source_type": "image", "destination_type": "volume",
                    "volume_size": 40, "delete_on_termination": true}])
        );
        assert_eq!(
            CreateServer::new("n", "f", "i").to_json()["server"]["networks"],
            json!("auto")
        );
    }

    #[test]
    fn limits_and_unlimited() {
        let w: WireLimits = serde_json::from_str(
            r#"{"limits": {"rate": [], "absolute": {"maxTotalCores": 20, "maxTotalInstances": 10, "maxTotalRAMSize": -1,
               "maxTotalKeypairs": 100, "totalRAMUsed": 512, "totalCoresUsed": 1, "totalInstancesUsed": 1}}}"#,
        )
        .unwrap();
        let l = limits_from(&w.limits.absolute);
        assert_eq!(
            l.instances,
            Quota {
                limit: Some(10),
                used: 1
            }
        );
        assert_eq!(l.cores.remaining(), Some(19));
        assert_eq!(
            l.ram_mb,
            Quota {
                limit: None,
                used: 512
            }
        );
        assert_eq!(l.ram_mb.remaining(), None);
    }

    #[test]
    fn flavors_page() {
        let p: FlavorsPage = serde_json::from_str(
            r#"{"flavors": [{"id": "a060be0d", "name": "m1.small", "ram": 512, "disk": 1, "swap": "", "vcpus": 1,
              "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": false, "os-flavor-access:is_public": true,
              "rxtx_factor": 1.0, "links": []}]}"#,
        )
        .unwrap();
        assert_eq!(p.flavors[0].ram, 512);
        assert!(p.flavors[0].is_public);
        assert!(next_of(&p.flavors_links).is_none());
    }

    #[test]
    fn path_ids_are_encoded() {
        assert_eq!(path_id("c510a171-00a9").unwrap(), "c510a171-00a9");
        assert_eq!(path_id("../x y").unwrap(), "..%2Fx%20y");
        assert!(path_id("").is_err() && path_id("..").is_err() && path_id(".").is_err());
    }
}
