//! In-memory cloud state: identities and tokens, servers, images, networks, ports, floating IPs.
//!
//! Time-driven transitions (BUILD -> ACTIVE/ERROR, deleting -> gone) are applied lazily by
//! [`Store::advance`], which every handler calls first; a queue of due events keeps it O(due).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use chrono::{DateTime, Duration, Utc};
use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::config::{QuotaConfig, SimConfig, stable_hex, stable_uuid};

pub type Time = DateTime<Utc>;

/// Rows kept in creation order for marker pagination.
pub trait Row {
    fn id(&self) -> &str;
    fn created(&self) -> Time;
}

/// A table ordered by (created, id) with O(log n) marker lookup.
#[derive(Debug)]
pub struct Table<T> {
    rows: HashMap<String, T>,
    order: BTreeSet<(Time, String)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: HashMap::new(),
            order: BTreeSet::new(),
        }
    }
}

/// A pagination marker that names no row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerNotFound(pub String);

impl<T: Row> Table<T> {
    pub fn insert(&mut self, row: T) {
        if let Some(old) = self.rows.get(row.id()) {
            self.order.remove(&(old.created(), old.id().to_string()));
        }
        self.order.insert((row.created(), row.id().to_string()));
        self.rows.insert(row.id().to_string(), row);
    }
    pub fn get(&self, id: &str) -> Option<&T> {
        self.rows.get(id)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.rows.get_mut(id)
    }
    pub fn remove(&mut self, id: &str) -> Option<T> {
        let row = self.rows.remove(id)?;
        self.order.remove(&(row.created(), row.id().to_string()));
        Some(row)
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.rows.values()
    }
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut()
    }
    pub fn clear(&mut self) {
        self.rows.clear();
        self.order.clear();
    }

    /// Rows after `marker` (exclusive), newest first when `descending`, else oldest first.
    pub fn page_from<'a>(
        &'a self,
        marker: Option<&str>,
        descending: bool,
    ) -> Result<Box<dyn Iterator<Item = &'a T> + 'a>, MarkerNotFound> {
        use std::ops::Bound::{Excluded, Unbounded};
        let bound = match marker {
            None => None,
            Some(m) => {
                let row = self
                    .rows
                    .get(m)
                    .ok_or_else(|| MarkerNotFound(m.to_string()))?;
                Some((row.created(), m.to_string()))
            }
        };
        let keys: Box<dyn Iterator<Item = &(Time, String)>> = match (bound, descending) {
            (None, false) => Box::new(self.order.iter()),
            (None, true) => Box::new(self.order.iter().rev()),
            (Some(b), false) => Box::new(self.order.range((Excluded(b), Unbounded))),
            (Some(b), true) => Box::new(self.order.range((Unbounded, Excluded(b))).rev()),
        };
        Ok(Box::new(keys.filter_map(|(_, id)| self.rows.get(id))))
    }
}

/// An IPv4 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        if !(8..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some(Cidr {
            base: u32::from(addr) & mask,
            prefix,
        })
    }
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }
    pub fn host(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }
    pub fn offset_of(&self, ip: &str) -> Option<u32> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        let v = u32::from(ip);
        (v >= self.base && v < self.base + self.size()).then(|| v - self.base)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Hands out host addresses of a subnet: .1 is the gateway, the broadcast address is never used.
#[derive(Debug, Clone)]
pub struct Allocator {
    cidr: Cidr,
    next: u32,
    freed: BTreeSet<u32>,
    used: HashSet<u32>,
}

impl Allocator {
    pub fn new(cidr: Cidr) -> Self {
        Allocator {
            cidr,
            next: 2,
            freed: BTreeSet::new(),
            used: HashSet::new(),
        }
    }
    pub fn allocate(&mut self) -> Option<String> {
        loop {
            let candidate = match self.freed.pop_first() {
                Some(c) => c,
                None if self.next < self.cidr.size() - 1 => {
                    self.next += 1;
                    self.next - 1
                }
                None => return None,
            };
            if self.used.insert(candidate) {
                return Some(self.cidr.host(candidate).to_string());
            }
        }
    }
    /// Marks a chosen address as used; false if it is taken or outside the subnet.
    pub fn claim(&mut self, ip: &str) -> bool {
        match self.cidr.offset_of(ip) {
            Some(o) if o >= 2 && o < self.cidr.size() - 1 => self.used.insert(o),
            _ => false,
        }
    }
    pub fn release(&mut self, ip: &str) {
        if let Some(o) = self.cidr.offset_of(ip)
            && self.used.remove(&o)
        {
            self.freed.insert(o);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub quota: QuotaConfig,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub password: String,
    pub project_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AppCredential {
    pub id: String,
    pub name: String,
    pub secret: String,
    pub user_id: String,
    pub project_id: String,
}

/// An issued token (the token string is the map key).
#[derive(Debug, Clone)]
pub struct Token {
    pub user_id: String,
    pub project_id: Option<String>,
    pub methods: Vec<String>,
    pub issued_at: Time,
    pub expires_at: Time,
    pub audit_id: String,
    pub app_cred_id: Option<String>,
}

/// Keystone's data. Tokens live here too; expired ones are purged when new ones are issued.
#[derive(Debug, Default)]
pub struct Identity {
    pub domains: Vec<Domain>,
    pub projects: Vec<Project>,
    pub users: Vec<User>,
    pub app_creds: Vec<AppCredential>,
    pub tokens: HashMap<String, Token>,
}

impl Identity {
    pub fn from_config(c: &SimConfig) -> Identity {
        let domains: Vec<Domain> = c
            .domains
            .iter()
            .map(|d| Domain {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect();
        let domain_id = |d: &str| {
            domains
                .iter()
                .find(|x| x.id == d || x.name == d)
                .map(|x| x.id.clone())
                .unwrap_or_else(|| d.to_string())
        };
        let projects: Vec<Project> = c
            .projects
            .iter()
            .map(|p| Project {
                id: p
                    .id
                    .clone()
                    .unwrap_or_else(|| stable_hex("project", &p.name)),
                name: p.name.clone(),
                domain_id: domain_id(&p.domain),
                quota: p.quota.unwrap_or(c.quota),
            })
            .collect();
        let project_id = |name: &str| {
            projects
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.id.clone())
                .unwrap_or_default()
        };
        let users: Vec<User> = c
            .users
            .iter()
            .map(|u| User {
                id: u.id.clone().unwrap_or_else(|| stable_hex("user", &u.name)),
                name: u.name.clone(),
                domain_id: domain_id(&u.domain),
                password: u.password.clone(),
                project_ids: u.projects.iter().map(|p| project_id(p)).collect(),
            })
            .collect();
        let app_creds = c
            .application_credentials
            .iter()
            .map(|a| AppCredential {
                id: a
                    .id
                    .clone()
                    .unwrap_or_else(|| stable_hex("appcred", &a.name)),
                name: a.name.clone(),
                secret: a.secret.clone(),
                user_id: users
                    .iter()
                    .find(|u| u.name == a.user)
                    .map(|u| u.id.clone())
                    .unwrap_or_default(),
                project_id: project_id(&a.project),
            })
            .collect();
        Identity {
            domains,
            projects,
            users,
            app_creds,
            tokens: HashMap::new(),
        }
    }

    pub fn domain(&self, id: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.id == id)
    }
    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u64,
    pub disk: u64,
    pub ephemeral: u64,
    pub swap: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    Build,
    Active,
    Error,
    Deleted,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Build => "BUILD",
            ServerStatus::Active => "ACTIVE",
            ServerStatus::Error => "ERROR",
            ServerStatus::Deleted => "DELETED",
        }
    }
    pub fn vm_state(self) -> &'static str {
        match self {
            ServerStatus::Build => "building",
            ServerStatus::Active => "active",
            ServerStatus::Error => "error",
            ServerStatus::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerFault {
    pub code: u16,
    pub message: String,
    pub created: Time,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub flavor: Flavor,
    /// None when booted from a volume.
    pub image_id: Option<String>,
    pub status: ServerStatus,
    pub created: Time,
    pub updated: Time,
    pub launched_at: Option<Time>,
    pub terminated_at: Option<Time>,
    /// Set by DELETE: the server is "deleting" until this time.
    pub deleting_until: Option<Time>,
    pub fault: Option<ServerFault>,
    /// A boot that will end in ERROR with this message.
    pub boot_error: Option<String>,
    pub metadata: IndexMap<String, String>,
    pub key_name: Option<String>,
    pub availability_zone: String,
    pub config_drive: bool,
    pub user_data: Option<String>,
    pub security_groups: Vec<String>,
    pub port_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub instance_number: u64,
    pub admin_pass: String,
}

impl Row for Server {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> Time {
        self.created
    }
}

impl Server {
    /// Counts towards quota and appears in plain listings.
    pub fn is_live(&self) -> bool {
        self.status != ServerStatus::Deleted
    }
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub visibility: String,
    pub owner: String,
    pub protected: bool,
    pub min_disk: u64,
    pub min_ram: u64,
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    pub tags: Vec<String>,
    pub created: Time,
    pub updated: Time,
    /// Custom (non-schema) properties, top-level keys on the wire.
    pub properties: Map<String, Value>,
}

impl Row for Image {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> Time {
        self.created
    }
}

#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub shared: bool,
    pub external: bool,
    pub subnet_id: String,
    pub subnet_name: String,
    pub cidr: Cidr,
    pub alloc: Allocator,
    pub created: Time,
}

#[derive(Debug, Clone)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub subnet_id: String,
    pub mac: String,
    pub ip: String,
    pub device_id: String,
    pub device_owner: String,
    pub status: String,
    pub binding_host: String,
    pub project_id: String,
    pub created: Time,
    pub updated: Time,
    pub revision: u64,
}

impl Row for Port {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> Time {
        self.created
    }
}

#[derive(Debug, Clone)]
pub struct FloatingIp {
    pub id: String,
    pub address: String,
    pub network_id: String,
    pub port_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub project_id: String,
    pub description: String,
    pub created: Time,
    pub updated: Time,
    pub revision: u64,
}

impl Row for FloatingIp {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> Time {
        self.created
    }
}

impl FloatingIp {
    pub fn status(&self) -> &'static str {
        if self.port_id.is_some() {
            "ACTIVE"
        } else {
            "DOWN"
        }
    }
}

#[derive(Debug, Clone)]
pub struct Keypair {
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub user_id: String,
    pub created: Time,
}

/// Compute usage of one project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

/// Failures of state operations shared by several services.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("Network {0} could not be found.")]
    NetworkNotFound(String),
    #[error("No more IP addresses available on network {0}.")]
    IpExhausted(String),
    #[error("IP address {0} already allocated in subnet {1}")]
    IpTaken(String, String),
    #[error("Port {0} could not be found.")]
    PortNotFound(String),
}

/// Everything but identity. Guarded by one mutex in [`crate::Sim`].
#[derive(Debug, Default)]
pub struct Store {
    pub flavors: Vec<Flavor>,
    pub servers: Table<Server>,
    pub images: Table<Image>,
    pub networks: Vec<Network>,
    pub ports: Table<Port>,
    pub fips: Table<FloatingIp>,
    /// port id -> floating IP id
    pub fip_by_port: HashMap<String, String>,
    pub keypairs: IndexMap<String, Keypair>,
    /// (due time, server id) of servers whose status changes by itself.
    pending: BTreeSet<(Time, String)>,
    instance_seq: u64,
    /// Ensures strictly increasing creation stamps so ordering is deterministic.
    last_stamp: Option<Time>,
    pub boot_delay: Duration,
    pub delete_delay: Duration,
}

/// A new server's parameters after validation by the Nova handler.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub flavor: Flavor,
    pub image_id: Option<String>,
    pub network_ids: Vec<String>,
    pub port_ids: Vec<String>,
    pub metadata: IndexMap<String, String>,
    pub key_name: Option<String>,
    pub availability_zone: String,
    pub config_drive: bool,
    pub user_data: Option<String>,
    pub security_groups: Vec<String>,
    pub volume_ids: Vec<String>,
    pub boot_error: Option<String>,
    /// Seeding: a chosen creation time and an already settled status.
    pub created: Option<Time>,
    pub status: Option<ServerStatus>,
}

impl Store {
    pub fn from_config(c: &SimConfig, owner_project: &str) -> Store {
        let now = Utc::now();
        let mut s = Store {
            boot_delay: Duration::milliseconds(c.boot_delay_ms as i64),
            delete_delay: Duration::milliseconds(c.delete_delay_ms as i64),
            ..Store::default()
        };
        s.flavors = c
            .flavors
            .iter()
            .map(|f| Flavor {
                id: f
                    .id
                    .clone()
                    .unwrap_or_else(|| stable_uuid("flavor", &f.name)),
                name: f.name.clone(),
                vcpus: f.vcpus,
                ram: f.ram,
                disk: f.disk,
                ephemeral: f.ephemeral,
                swap: f.swap,
            })
            .collect();
        for n in &c.networks {
            let cidr = Cidr::parse(&n.cidr).unwrap_or(Cidr {
                base: 0x0a00_0000,
                prefix: 24,
            });
            s.networks.push(Network {
                id: n
                    .id
                    .clone()
                    .unwrap_or_else(|| stable_uuid("network", &n.name)),
                name: n.name.clone(),
                shared: n.shared,
                external: n.external,
                subnet_id: stable_uuid("subnet", &n.name),
                subnet_name: format!("{}-subnet", n.name),
                cidr,
                alloc: Allocator::new(cidr),
                created: now,
            });
        }
        for i in &c.images {
            let id =
                i.id.clone()
                    .unwrap_or_else(|| stable_uuid("image", &i.name));
            s.images.insert(Image {
                name: Some(i.name.clone()),
                status: "active".into(),
                disk_format: Some(i.disk_format.clone()),
                container_format: Some("bare".into()),
                visibility: i.visibility.clone(),
                owner: owner_project.to_string(),
                protected: false,
                min_disk: 0,
                min_ram: 0,
                size: Some(i.size),
                checksum: Some(hex::encode(md5_of(id.as_bytes()))),
                os_hash_value: None,
                tags: vec![],
                created: now,
                updated: now,
                properties: i.properties.clone(),
                id,
            });
        }
        for k in &c.keypairs {
            s.keypairs.insert(
                k.name.clone(),
                Keypair {
                    name: k.name.clone(),
                    public_key: k.public_key.clone(),
                    fingerprint: fingerprint(&k.public_key),
                    user_id: String::new(),
                    created: now,
                },
            );
        }
        s
    }

    /// A creation timestamp strictly after the previous one (microsecond resolution).
    pub fn stamp(&mut self) -> Time {
        let now = Utc::now();
        let t = match self.last_stamp {
            Some(last) if now <= last => last + Duration::microseconds(1),
            _ => now,
        };
        self.last_stamp = Some(t);
        t
    }

    pub fn flavor(&self, id_or_name: &str) -> Option<&Flavor> {
        self.flavors
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.flavors.iter().find(|f| f.name == id_or_name))
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.id == id)
    }

    pub fn usage(&self, project_id: &str) -> Usage {
        let mut u = Usage::default();
        for s in self.servers.values() {
            if s.is_live() && s.project_id == project_id {
                u.instances += 1;
                u.cores += i64::from(s.flavor.vcpus);
                u.ram += s.flavor.ram as i64;
            }
        }
        u
    }

    /// Applies every status change due by `now`.
    pub fn advance(&mut self, now: Time) {
        while let Some((due, _)) = self.pending.first() {
            if *due > now {
                break;
            }
            let Some((due, id)) = self.pending.pop_first() else {
                break;
            };
            self.settle(&id, due);
        }
    }

    fn settle(&mut self, id: &str, due: Time) {
        let Some(server) = self.servers.get_mut(id) else {
            return;
        };
        if server.deleting_until.is_some_and(|t| t <= due) {
            server.deleting_until = None;
            server.status = ServerStatus::Deleted;
            server.updated = due;
            server.terminated_at = Some(due);
            let ports = std::mem::take(&mut server.port_ids);
            for p in ports {
                self.delete_port(&p);
            }
            return;
        }
        if server.status == ServerStatus::Build {
            server.updated = due;
            match server.boot_error.take() {
                Some(message) => {
                    server.status = ServerStatus::Error;
                    server.fault = Some(ServerFault {
                        code: 500,
                        message,
                        created: due,
                    });
                }
                None => {
                    server.status = ServerStatus::Active;
                    server.launched_at = Some(due);
                }
            }
            let ports = server.port_ids.clone();
            for p in ports {
                if let Some(port) = self.ports.get_mut(&p) {
                    port.status = "ACTIVE".into();
                    port.binding_host = "simhost1".into();
                    port.updated = due;
                }
            }
        }
    }

    /// Creates a port on a network, allocating (or claiming) its fixed IP.
    pub fn create_port(
        &mut self,
        network_id: &str,
        project_id: &str,
        fixed_ip: Option<&str>,
        f: impl FnOnce(&mut Port),
    ) -> Result<String, StateError> {
        let created = self.stamp();
        let net = self
            .networks
            .iter_mut()
            .find(|n| n.id == network_id)
            .ok_or_else(|| StateError::NetworkNotFound(network_id.to_string()))?;
        let ip = match fixed_ip {
            Some(ip) => {
                if !net.alloc.claim(ip) {
                    return Err(StateError::IpTaken(ip.to_string(), net.subnet_id.clone()));
                }
                ip.to_string()
            }
            None => net
                .alloc
                .allocate()
                .ok_or_else(|| StateError::IpExhausted(network_id.to_string()))?,
        };
        let b = uuid::Uuid::new_v4();
        let b = b.as_bytes();
        let mut port = Port {
            id: uuid::Uuid::new_v4().to_string(),
            name: String::new(),
            network_id: network_id.to_string(),
            subnet_id: net.subnet_id.clone(),
            mac: format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]),
            ip,
            device_id: String::new(),
            device_owner: String::new(),
            status: "DOWN".into(),
            binding_host: String::new(),
            project_id: project_id.to_string(),
            created,
            updated: created,
            revision: 1,
        };
        f(&mut port);
        let id = port.id.clone();
        self.ports.insert(port);
        Ok(id)
    }

    /// Deletes a port, releasing its IP and unattaching any floating IP (which goes DOWN).
    pub fn delete_port(&mut self, id: &str) -> Option<Port> {
        let port = self.ports.remove(id)?;
        if let Some(net) = self.networks.iter_mut().find(|n| n.id == port.network_id) {
            net.alloc.release(&port.ip);
        }
        if let Some(fid) = self.fip_by_port.remove(id) {
            let now = Utc::now();
            if let Some(f) = self.fips.get_mut(&fid) {
                f.port_id = None;
                f.fixed_ip = None;
                f.updated = now;
                f.revision += 1;
            }
        }
        Some(port)
    }

    /// Attaches (Some) or detaches (None) a floating IP.
    pub fn set_fip_port(&mut self, fip_id: &str, port_id: Option<&str>) -> Result<(), StateError> {
        let fixed = match port_id {
            Some(p) => Some(
                self.ports
                    .get(p)
                    .ok_or_else(|| StateError::PortNotFound(p.to_string()))?
                    .ip
                    .clone(),
            ),
            None => None,
        };
        let Some(f) = self.fips.get_mut(fip_id) else {
            return Ok(());
        };
        if let Some(old) = f.port_id.take() {
            self.fip_by_port.remove(&old);
        }
        f.port_id = port_id.map(str::to_string);
        f.fixed_ip = fixed;
        f.updated = Utc::now();
        f.revision += 1;
        // A port has at most one floating IP: attaching another detaches the previous one.
        if let Some(p) = port_id
            && let Some(prev) = self.fip_by_port.insert(p.to_string(), fip_id.to_string())
            && prev != fip_id
            && let Some(pf) = self.fips.get_mut(&prev)
        {
            pf.port_id = None;
            pf.fixed_ip = None;
        }
        Ok(())
    }

    /// Creates a server (and its ports). Quota is the caller's business.
    pub fn create_server(&mut self, new: NewServer) -> Result<String, StateError> {
        let id = uuid::Uuid::new_v4().to_string();
        let created = match new.created {
            Some(t) => t,
            None => self.stamp(),
        };
        let status = new.status.unwrap_or(ServerStatus::Build);
        let az = new.availability_zone.clone();
        let mut port_ids = Vec::new();
        for net in &new.network_ids {
            let pid = self.create_port(net, &new.project_id, None, |p| {
                p.device_id = id.clone();
                p.device_owner = format!("compute:{az}");
                if status == ServerStatus::Active {
                    p.status = "ACTIVE".into();
                    p.binding_host = "simhost1".into();
                }
            });
            match pid {
                Ok(pid) => port_ids.push(pid),
                Err(e) => {
                    for p in &port_ids {
                        self.delete_port(p);
                    }
                    return Err(e);
                }
            }
        }
        for pid in &new.port_ids {
            let port = self
                .ports
                .get_mut(pid)
                .ok_or_else(|| StateError::PortNotFound(pid.clone()))?;
            port.device_id = id.clone();
            port.device_owner = format!("compute:{az}");
            port_ids.push(pid.clone());
        }
        self.instance_seq += 1;
        let server = Server {
            id: id.clone(),
            name: new.name,
            project_id: new.project_id,
            user_id: new.user_id,
            flavor: new.flavor,
            image_id: new.image_id,
            status,
            created,
            updated: created,
            launched_at: (status == ServerStatus::Active).then_some(created),
            terminated_at: None,
            deleting_until: None,
            fault: None,
            boot_error: new.boot_error,
            metadata: new.metadata,
            key_name: new.key_name,
            availability_zone: new.availability_zone,
            config_drive: new.config_drive,
            user_data: new.user_data,
            security_groups: new.security_groups,
            port_ids,
            volume_ids: new.volume_ids,
            instance_number: self.instance_seq,
            admin_pass: random_password(),
        };
        if status == ServerStatus::Build {
            self.pending.insert((created + self.boot_delay, id.clone()));
        } else if status == ServerStatus::Error && server.fault.is_none() {
            let mut server = server;
            server.fault = Some(ServerFault {
                code: 500,
                message: server
                    .boot_error
                    .take()
                    .unwrap_or_else(|| "Simulated failure".into()),
                created,
            });
            self.servers.insert(server);
            return Ok(id);
        }
        self.servers.insert(server);
        Ok(id)
    }

    /// Starts deleting a server; it disappears after the delete delay. False if unknown or gone.
    pub fn delete_server(&mut self, id: &str, now: Time) -> bool {
        let delay = self.delete_delay;
        let Some(s) = self.servers.get_mut(id) else {
            return false;
        };
        if !s.is_live() {
            return false;
        }
        if s.deleting_until.is_none() {
            let due = now + delay;
            s.deleting_until = Some(due);
            self.pending.insert((due, id.to_string()));
        }
        self.advance(now);
        true
    }

    /// Drops deleted servers (tombstones kept for `changes-since`).
    pub fn purge_deleted(&mut self) {
        let gone: Vec<String> = self
            .servers
            .values()
            .filter(|s| !s.is_live())
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            self.servers.remove(&id);
        }
    }
}

pub fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

/// An OpenSSH-style MD5 fingerprint of a public key line.
pub fn fingerprint(public_key: &str) -> String {
    md5_of(public_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A 12-character admin password, as Nova returns on create.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..12)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Formats a time as Nova/Neutron do: `2026-11-23T23:22:53Z`.
pub fn iso(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses the ISO 8601 forms clients send in `changes-since` and seeding requests.
pub fn parse_time(s: &str) -> Option<Time> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::from_config(&SimConfig::default(), "p")
    }

    fn new_server(s: &Store, name: &str, net: bool) -> NewServer {
        NewServer {
            name: name.into(),
            project_id: "p".into(),
            user_id: "u".into(),
            flavor: s.flavors[0].clone(),
            image_id: None,
            network_ids: if net {
                vec![s.networks[0].id.clone()]
            } else {
                vec![]
            },
            port_ids: vec![],
            metadata: IndexMap::new(),
            key_name: None,
            availability_zone: "nova".into(),
            config_drive: false,
            user_data: None,
            security_groups: vec![],
            volume_ids: vec![],
            boot_error: None,
            created: None,
            status: None,
        }
    }

    #[test]
    fn cidr_and_allocator() {
        let c = Cidr::parse("10.1.2.77/30").unwrap();
        assert_eq!(c.to_string(), "10.1.2.76/30");
        let mut a = Allocator::new(c);
        assert_eq!(a.allocate().as_deref(), Some("10.1.2.78"));
        assert_eq!(
            a.allocate(),
            None,
            "a /30 has one usable host past the gateway"
        );
        a.release("10.1.2.78");
        assert_eq!(a.allocate().as_deref(), Some("10.1.2.78"));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        let mut b = Allocator::new(Cidr::parse("10.0.0.0/24").unwrap());
        assert!(b.claim("10.0.0.2"));
        assert!(!b.claim("10.0.0.2"));
        assert_eq!(b.allocate().as_deref(), Some("10.0.0.3"));
    }

    #[test]
    fn pagination_by_marker_both_directions() {
        let mut s = store();
        s.images.clear();
        let mut ids = vec![];
        for i in 0..5 {
            let n = new_server(&s, &format!("s{i}"), false);
            ids.push(s.create_server(n).unwrap());
        }
        let asc: Vec<_> = s
            .servers
            .page_from(None, false)
            .unwrap()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(asc, ids);
        let after: Vec<_> = s
            .servers
            .page_from(Some(&ids[1]), false)
            .unwrap()
            .map(|x| x.name.clone())
            .collect();
        assert_eq!(after, ["s2", "s3", "s4"]);
        let desc: Vec<_> = s
            .servers
            .page_from(Some(&ids[3]), true)
            .unwrap()
            .map(|x| x.name.clone())
            .collect();
        assert_eq!(desc, ["s2", "s1", "s0"]);
        assert!(s.servers.page_from(Some("nope"), true).is_err());
    }

    #[test]
    fn boot_then_delete_lifecycle_frees_port_and_detaches_fip() {
        let mut s = store();
        let id = s.create_server(new_server(&s, "a", true)).unwrap();
        let port = s.servers.get(&id).unwrap().port_ids[0].clone();
        assert_eq!(s.ports.get(&port).unwrap().status, "DOWN");
        assert_eq!(s.usage("p").instances, 1);
        let later = Utc::now() + Duration::seconds(5);
        s.advance(later);
        assert_eq!(s.servers.get(&id).unwrap().status, ServerStatus::Active);
        assert_eq!(s.ports.get(&port).unwrap().status, "ACTIVE");

        let now = s.stamp();
        let public = s.networks[1].id.clone();
        s.fips.insert(FloatingIp {
            id: "f1".into(),
            address: "172.24.0.9".into(),
            network_id: public,
            port_id: None,
            fixed_ip: None,
            project_id: "p".into(),
            description: String::new(),
            created: now,
            updated: now,
            revision: 1,
        });
        s.set_fip_port("f1", Some(&port)).unwrap();
        assert_eq!(s.fips.get("f1").unwrap().status(), "ACTIVE");

        assert!(s.delete_server(&id, later));
        assert_eq!(
            s.servers.get(&id).unwrap().status,
            ServerStatus::Active,
            "still deleting"
        );
        s.advance(later + Duration::seconds(5));
        assert_eq!(s.servers.get(&id).unwrap().status, ServerStatus::Deleted);
        assert!(s.ports.get(&port).is_none());
        let f = s.fips.get("f1").unwrap();
        assert_eq!((f.status(), f.port_id.as_deref()), ("DOWN", None));
        assert_eq!(s.usage("p").instances, 0);
        assert!(
            !s.delete_server(&id, later),
            "a deleted server cannot be deleted again"
        );
    }

    #[test]
    fn boot_error_sets_fault() {
        let mut s = store();
        let mut n = new_server(&s, "bad", false);
        n.boot_error = Some("No valid host was found.".into());
        let id = s.create_server(n).unwrap();
        s.advance(Utc::now() + Duration::seconds(5));
        let srv = s.servers.get(&id).unwrap();
        assert_eq!(srv.status, ServerStatus::Error);
        assert_eq!(
            srv.fault.as_ref().unwrap().message,
            "No valid host was found."
        );
    }

    #[test]
    fn parses_times() {
        assert!(parse_time("2026-11-23T23:22:53Z").is_some());
        assert!(parse_time("2026-11-23T23:22:53.123456").is_some());
        assert!(parse_time("2026-11-23T23:22:53+02:00").is_some());
        assert!(parse_time("yesterday").is_none());
    }
}
