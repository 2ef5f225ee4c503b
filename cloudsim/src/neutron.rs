//! Neutron v2.0: networks, subnets, ports, floating IPs, security groups, extensions, quotas.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::SharedSim;
use crate::config::stable_uuid;
use crate::keystone::{Caller, require_token};
use crate::nova::encode_query;
use crate::state::{FloatingIp, Network, Port, StateError, Store, iso};

const PREFIX: &str = "/network/v2.0";
const QUOTA_FLOATINGIP: i64 = 50;
const QUOTA_PORT: i64 = 500;
/// The most items one page returns when the client gives no `limit`.
const MAX_PAGE: usize = 10_000;

pub fn routes(sim: SharedSim) -> Router {
    let api = Router::new()
        .route(&p("/networks"), get(list_networks))
        .route(&p("/networks/{id}"), get(show_network))
        .route(&p("/subnets"), get(list_subnets))
        .route(&p("/subnets/{id}"), get(show_subnet))
        .route(&p("/ports"), get(list_ports).post(create_port))
        .route(
            &p("/ports/{id}"),
            get(show_port).put(update_port).delete(delete_port),
        )
        .route(&p("/floatingips"), get(list_fips).post(create_fip))
        .route(
            &p("/floatingips/{id}"),
            get(show_fip).put(update_fip).delete(delete_fip),
        )
        .route(&p("/security-groups"), get(list_security_groups))
        .route(&p("/security-groups/{id}"), get(show_security_group))
        .route(&p("/security-group-rules"), get(empty_list))
        .route(&p("/routers"), get(empty_list))
        .route(&p("/extensions"), get(list_extensions))
        .route(&p("/extensions/{alias}"), get(show_extension))
        .route(&p("/availability_zones"), get(availability_zones))
        .route(&p("/quotas/{project}"), get(show_quota))
        .route(&p("/quotas/{project}/details"), get(show_quota_details))
        .route(&p("/auto-allocated-topology/{project}"), get(auto_topology))
        .route(PREFIX, get(resources))
        .route_layer(middleware::from_fn_with_state(sim.clone(), require_token));
    Router::new()
        .route("/network", get(versions))
        .with_state(sim.clone())
        .merge(api.with_state(sim))
}

fn p(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// Neutron's error body `{"NeutronError": {"type", "message", "detail"}}`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"NeutronError": {"type": kind, "message": message, "detail": ""}});
    (status, Json(body)).into_response()
}

/// The error type Neutron uses for a bare status (injected faults, unknown routes).
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "HTTPBadRequest",
        401 => "HTTPUnauthorized",
        403 => "HTTPForbidden",
        404 => "HTTPNotFound",
        409 => "HTTPConflict",
        429 => "HTTPTooManyRequests",
        503 => "HTTPServiceUnavailable",
        _ => "HTTPInternalServerError",
    }
}

fn not_found(kind: &str, label: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        kind,
        &format!("{label} {id} could not be found."),
    )
}

fn state_error(e: StateError) -> Response {
    let (status, kind) = match &e {
        StateError::NetworkNotFound(_) => (StatusCode::NOT_FOUND, "NetworkNotFound"),
        StateError::PortNotFound(_) => (StatusCode::NOT_FOUND, "PortNotFound"),
        StateError::IpExhausted(_) => (StatusCode::CONFLICT, "IpAddressGenerationFailure"),
        StateError::IpTaken(..) => (StatusCode::CONFLICT, "IpAddressAlreadyAllocated"),
    };
    error(status, kind, &e.to_string())
}

async fn versions(State(sim): State<SharedSim>) -> Json<Value> {
    Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}/v2.0/", sim.network_url())}]}]}))
}

async fn resources(State(sim): State<SharedSim>) -> Json<Value> {
    let list: Vec<Value> = ["network", "subnet", "port", "floatingip", "security_group"]
        .iter()
        .map(|n| {
            let collection = if *n == "security_group" { "security-groups".to_string() } else { format!("{n}s") };
            json!({"name": n, "collection": collection,
                   "links": [{"rel": "self", "href": format!("{}/v2.0/{collection}", sim.network_url())}]})
        })
        .collect();
    Json(json!({ "resources": list }))
}

type Params = Query<Vec<(String, String)>>;

const NON_FILTERS: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
    "verbose",
];

/// Exact-match filters; a repeated key means "any of"; unknown keys are ignored, as Neutron does.
pub fn matches(obj: &Value, query: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = query
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !NON_FILTERS.contains(k))
        .collect();
    keys.dedup();
    keys.iter().all(|key| {
        let wanted: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if *key == "fixed_ips" {
            return wanted.iter().any(|w| {
                let (k, v) = w.split_once('=').unwrap_or(("ip_address", w));
                obj["fixed_ips"]
                    .as_array()
                    .is_some_and(|ips| ips.iter().any(|ip| ip[k].as_str() == Some(v)))
            });
        }
        let Some(val) = obj.get(*key) else {
            return true;
        };
        let have = match val {
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        wanted.iter().any(|w| {
            if val.is_boolean() {
                w.eq_ignore_ascii_case(&have)
            } else {
                *w == have
            }
        })
    })
}

fn project_fields(obj: Value, q: &[(String, String)]) -> Value {
    let fields: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "fields")
        .map(|(_, v)| v.as_str())
        .collect();
    if fields.is_empty() {
        return obj;
    }
    match obj {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

/// Filters, paginates (limit + marker, `<collection>_links` next) and projects a listing.
fn listing<'a, T: 'a>(
    sim: &SharedSim,
    collection: &str,
    rows: impl Iterator<Item = &'a T>,
    render: impl Fn(&T) -> Value,
    id_of: impl Fn(&T) -> &str,
    q: &[(String, String)],
) -> Response {
    let limit = match q.iter().find(|(k, _)| k == "limit") {
        None => MAX_PAGE,
        Some((_, l)) => match l.parse::<usize>() {
            Ok(0) => MAX_PAGE,
            Ok(l) => l,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!(
                        "Bad limit request: Limit must be an integer 0 or greater and not '{l}'."
                    ),
                );
            }
        },
    };
    let mut items = Vec::new();
    let mut last_id = None;
    for row in rows {
        let obj = render(row);
        if !matches(&obj, q) {
            continue;
        }
        items.push(project_fields(obj, q));
        last_id = Some(id_of(row).to_string());
        if items.len() == limit {
            break;
        }
    }
    let full = items.len() == limit && q.iter().any(|(k, _)| k == "limit");
    let key = collection.replace('-', "_");
    let mut body = json!({ key.clone(): items });
    if full && let Some(last) = last_id {
        let mut qs: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k != "marker").cloned().collect();
        qs.push(("marker".into(), last));
        body[format!("{key}_links")] = json!([{"rel": "next",
            "href": format!("{}/v2.0/{collection}?{}", sim.network_url(), encode_query(&qs))}]);
    }
    Json(body).into_response()
}

fn marker_error(m: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "HTTPNotFound",
        &format!("Marker {m} could not be found."),
    )
}

fn marker(q: &[(String, String)]) -> Option<&str> {
    q.iter()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.as_str())
}

fn std_fields(
    m: &mut Map<String, Value>,
    project: &str,
    created: &str,
    updated: &str,
    revision: u64,
) {
    m.insert("tenant_id".into(), json!(project));
    m.insert("project_id".into(), json!(project));
    m.insert("created_at".into(), json!(created));
    m.insert("updated_at".into(), json!(updated));
    m.insert("revision_number".into(), json!(revision));
    m.insert("tags".into(), json!([]));
    m.entry("description").or_insert(json!(""));
}

/// Owner of shared/external networks.
const SERVICE_PROJECT: &str = "00000000000000000000000000000000";

pub fn network_json(n: &Network) -> Value {
    let mut v = json!({
        "id": n.id, "name": n.name, "status": "ACTIVE", "admin_state_up": true,
        "shared": n.shared, "router:external": n.external, "subnets": [n.subnet_id],
        "mtu": if n.external { 1500 } else { 1450 }, "port_security_enabled": true,
        "availability_zones": ["nova"], "availability_zone_hints": [], "is_default": n.external,
        "ipv4_address_scope": null, "ipv6_address_scope": null, "l2_adjacency": true,
    });
    let t = iso(n.created);
    std_fields(
        v.as_object_mut().expect("object"),
        SERVICE_PROJECT,
        &t,
        &t,
        1,
    );
    v
}

fn subnet_json(n: &Network) -> Value {
    let gateway = n.cidr.host(1).to_string();
    let start = n.cidr.host(2).to_string();
    let end = n.cidr.host(n.cidr.size() - 2).to_string();
    let mut v = json!({
        "id": n.subnet_id, "name": n.subnet_name, "network_id": n.id, "ip_version": 4,
        "cidr": n.cidr.to_string(), "gateway_ip": gateway, "enable_dhcp": true,
        "dns_nameservers": [], "host_routes": [], "allocation_pools": [{"start": start, "end": end}],
        "ipv6_address_mode": null, "ipv6_ra_mode": null, "subnetpool_id": null, "segment_id": null,
    });
    let t = iso(n.created);
    std_fields(
        v.as_object_mut().expect("object"),
        SERVICE_PROJECT,
        &t,
        &t,
        1,
    );
    v
}

fn default_sg(project: &str) -> String {
    stable_uuid("security-group", project)
}

pub fn port_json(p: &Port) -> Value {
    let bound = !p.binding_host.is_empty();
    let mut v = json!({
        "id": p.id, "name": p.name, "network_id": p.network_id, "mac_address": p.mac,
        "fixed_ips": [{"subnet_id": p.subnet_id, "ip_address": p.ip}],
        "device_id": p.device_id, "device_owner": p.device_owner, "status": p.status,
        "admin_state_up": true, "security_groups": [default_sg(&p.project_id)],
        "binding:host_id": p.binding_host, "binding:vif_type": if bound { "ovs" } else { "unbound" },
        "binding:vnic_type": "normal", "binding:profile": {},
        "binding:vif_details": if bound { json!({"port_filter": true, "connectivity": "l2"}) } else { json!({}) },
        "allowed_address_pairs": [], "extra_dhcp_opts": [], "port_security_enabled": true,
        "ip_allocation": "immediate", "dns_name": "", "dns_assignment": [],
    });
    std_fields(
        v.as_object_mut().expect("object"),
        &p.project_id,
        &iso(p.created),
        &iso(p.updated),
        p.revision,
    );
    v
}

pub fn fip_json(store: &Store, f: &FloatingIp) -> Value {
    let port = f.port_id.as_deref().and_then(|p| store.ports.get(p));
    let details = port.map(|p| {
        json!({"status": p.status, "name": p.name, "admin_state_up": true, "network_id": p.network_id,
               "device_owner": p.device_owner, "mac_address": p.mac, "device_id": p.device_id})
    });
    let router = port.map(|_| stable_uuid("router", "router1"));
    let mut v = json!({
        "id": f.id, "floating_ip_address": f.address, "floating_network_id": f.network_id,
        "fixed_ip_address": f.fixed_ip, "port_id": f.port_id, "router_id": router,
        "status": f.status(), "description": f.description, "port_details": details,
        "dns_domain": "", "dns_name": "", "port_forwardings": [], "qos_policy_id": null,
    });
    std_fields(
        v.as_object_mut().expect("object"),
        &f.project_id,
        &iso(f.created),
        &iso(f.updated),
        f.revision,
    );
    v
}

async fn list_networks(State(sim): State<SharedSim>, Query(q): Params) -> Response {
    let store = sim.store();
    let start = match marker(&q) {
        None => 0,
        Some(m) => match store.networks.iter().position(|n| n.id == m) {
            Some(i) => i + 1,
            None => return marker_error(m),
        },
    };
    // Every configured network is shared, external or the tenant's own: all are visible.
    let rows = store.networks[start..].iter();
    listing(&sim, "networks", rows, network_json, |n| &n.id, &q)
}

async fn show_network(
    State(sim): State<SharedSim>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    match store.network(&id) {
        Some(n) => Json(json!({"network": project_fields(network_json(n), &q)})).into_response(),
        None => not_found("NetworkNotFound", "Network", &id),
    }
}

async fn list_subnets(State(sim): State<SharedSim>, Query(q): Params) -> Response {
    let store = sim.store();
    let start = match marker(&q) {
        None => 0,
        Some(m) => match store.networks.iter().position(|n| n.subnet_id == m) {
            Some(i) => i + 1,
            None => return marker_error(m),
        },
    };
    listing(
        &sim,
        "subnets",
        store.networks[start..].iter(),
        subnet_json,
        |n| &n.subnet_id,
        &q,
    )
}

async fn show_subnet(
    State(sim): State<SharedSim>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    match store.networks.iter().find(|n| n.subnet_id == id) {
        Some(n) => Json(json!({"subnet": project_fields(subnet_json(n), &q)})).into_response(),
        None => not_found("SubnetNotFound", "Subnet", &id),
    }
}

async fn list_ports(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    let rows = match store.ports.page_from(marker(&q), false) {
        Ok(r) => r,
        Err(e) => return marker_error(&e.0),
    };
    let rows = rows.filter(|p| p.project_id == caller.project_id);
    listing(&sim, "ports", rows, port_json, |p| &p.id, &q)
}

fn own_port<'a>(store: &'a Store, caller: &Caller, id: &str) -> Result<&'a Port, Response> {
    store
        .ports
        .get(id)
        .filter(|p| p.project_id == caller.project_id)
        .ok_or_else(|| not_found("PortNotFound", "Port", id))
}

async fn show_port(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    match own_port(&store, &caller, &id) {
        Ok(p) => Json(json!({"port": project_fields(port_json(p), &q)})).into_response(),
        Err(r) => r,
    }
}

fn body_object(body: &[u8], key: &str) -> Result<Map<String, Value>, Response> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(Value::as_object).cloned())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource body required: '{key}'."),
            )
        })
}

fn over_quota(resource: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "OverQuota",
        &format!("Quota exceeded for resources: ['{resource}']."),
    )
}

async fn create_port(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let b = match body_object(&body, "port") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(net) = b
        .get("network_id")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Failed to parse request. Required attribute 'network_id' not specified",
        );
    };
    let fixed_ip = b
        .get("fixed_ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(|ip| ip.get("ip_address"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let text = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut store = sim.store();
    let used = store
        .ports
        .values()
        .filter(|p| p.project_id == caller.project_id)
        .count() as i64;
    if used >= QUOTA_PORT {
        return over_quota("port");
    }
    let (name, device_id, device_owner) = (text("name"), text("device_id"), text("device_owner"));
    match store.create_port(&net, &caller.project_id, fixed_ip.as_deref(), |p| {
        p.name = name;
        p.device_id = device_id;
        p.device_owner = device_owner;
    }) {
        Ok(id) => {
            let port = store.ports.get(&id).map(port_json).unwrap_or_default();
            (StatusCode::CREATED, Json(json!({ "port": port }))).into_response()
        }
        Err(e) => state_error(e),
    }
}

async fn update_port(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b = match body_object(&body, "port") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut store = sim.store();
    if let Err(r) = own_port(&store, &caller, &id) {
        return r;
    }
    let Some(port) = store.ports.get_mut(&id) else {
        return not_found("PortNotFound", "Port", &id);
    };
    for (k, v) in &b {
        let s = v.as_str().unwrap_or_default().to_string();
        match k.as_str() {
            "name" => port.name = s,
            "device_id" => port.device_id = s,
            "device_owner" => port.device_owner = s,
            _ => {}
        }
    }
    port.updated = Utc::now();
    port.revision += 1;
    Json(json!({"port": port_json(port)})).into_response()
}

async fn delete_port(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut store = sim.store();
    let device = match own_port(&store, &caller, &id) {
        Ok(p) => p.device_id.clone(),
        Err(r) => return r,
    };
    store.delete_port(&id);
    if let Some(server) = store.servers.get_mut(&device) {
        server.port_ids.retain(|p| *p != id);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list_fips(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    let rows = match store.fips.page_from(marker(&q), false) {
        Ok(r) => r,
        Err(e) => return marker_error(&e.0),
    };
    let rows = rows.filter(|f| f.project_id == caller.project_id);
    listing(
        &sim,
        "floatingips",
        rows,
        |f| fip_json(&store, f),
        |f| &f.id,
        &q,
    )
}

fn own_fip<'a>(store: &'a Store, caller: &Caller, id: &str) -> Result<&'a FloatingIp, Response> {
    store
        .fips
        .get(id)
        .filter(|f| f.project_id == caller.project_id)
        .ok_or_else(|| not_found("FloatingIPNotFound", "Floating IP", id))
}

async fn show_fip(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let store = sim.store();
    match own_fip(&store, &caller, &id) {
        Ok(f) => {
            Json(json!({"floatingip": project_fields(fip_json(&store, f), &q)})).into_response()
        }
        Err(r) => r,
    }
}

/// Creates a floating IP on an external network, optionally attached to a port.
pub fn allocate_fip(
    store: &mut Store,
    project: &str,
    network_id: &str,
    address: Option<&str>,
    port_id: Option<&str>,
) -> Result<String, Response> {
    let created = store.stamp();
    let net = store
        .networks
        .iter_mut()
        .find(|n| n.id == network_id)
        .ok_or_else(|| not_found("NetworkNotFound", "Network", network_id))?;
    if !net.external {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Bad floatingip request: Network {network_id} is not a valid external network."
            ),
        ));
    }
    if let Some(p) = port_id
        && store.ports.get(p).is_none()
    {
        return Err(not_found("PortNotFound", "Port", p));
    }
    let net = store
        .networks
        .iter_mut()
        .find(|n| n.id == network_id)
        .ok_or_else(|| not_found("NetworkNotFound", "Network", network_id))?;
    let address = match address {
        Some(a) if net.alloc.claim(a) => a.to_string(),
        Some(a) => {
            return Err(error(
                StatusCode::CONFLICT,
                "IpAddressAlreadyAllocated",
                &format!(
                    "IP address {a} already allocated in subnet {}",
                    net.subnet_id
                ),
            ));
        }
        None => net.alloc.allocate().ok_or_else(|| {
            error(
                StatusCode::CONFLICT,
                "IpAddressGenerationFailure",
                &format!("No more IP addresses available on network {network_id}."),
            )
        })?,
    };
    let id = uuid::Uuid::new_v4().to_string();
    store.fips.insert(FloatingIp {
        id: id.clone(),
        address,
        network_id: network_id.to_string(),
        port_id: None,
        fixed_ip: None,
        project_id: project.to_string(),
        description: String::new(),
        created,
        updated: created,
        revision: 1,
    });
    if port_id.is_some() {
        store.set_fip_port(&id, port_id).map_err(state_error)?;
    }
    Ok(id)
}

async fn create_fip(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let b = match body_object(&body, "floatingip") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(net) = b.get("floating_network_id").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Failed to parse request. Required attribute 'floating_network_id' not specified",
        );
    };
    let mut store = sim.store();
    let used = store
        .fips
        .values()
        .filter(|f| f.project_id == caller.project_id)
        .count() as i64;
    if used >= QUOTA_FLOATINGIP {
        return over_quota("floatingip");
    }
    let port = b.get("port_id").and_then(Value::as_str);
    if let Some(p) = port
        && let Err(r) = own_port(&store, &caller, p)
    {
        return r;
    }
    let address = b.get("floating_ip_address").and_then(Value::as_str);
    match allocate_fip(&mut store, &caller.project_id, net, address, port) {
        Ok(id) => {
            if let Some(f) = store.fips.get_mut(&id) {
                f.description = b
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
            }
            let body = store
                .fips
                .get(&id)
                .map(|f| fip_json(&store, f))
                .unwrap_or_default();
            (StatusCode::CREATED, Json(json!({ "floatingip": body }))).into_response()
        }
        Err(r) => r,
    }
}

async fn update_fip(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b = match body_object(&body, "floatingip") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut store = sim.store();
    if let Err(r) = own_fip(&store, &caller, &id) {
        return r;
    }
    if let Some(port) = b.get("port_id") {
        let port = port.as_str();
        if let Some(p) = port
            && let Err(r) = own_port(&store, &caller, p)
        {
            return r;
        }
        if let Err(e) = store.set_fip_port(&id, port) {
            return state_error(e);
        }
    }
    if let Some(d) = b.get("description").and_then(Value::as_str)
        && let Some(f) = store.fips.get_mut(&id)
    {
        f.description = d.to_string();
    }
    let body = store
        .fips
        .get(&id)
        .map(|f| fip_json(&store, f))
        .unwrap_or_default();
    Json(json!({ "floatingip": body })).into_response()
}

async fn delete_fip(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut store = sim.store();
    let (address, network, port) = match own_fip(&store, &caller, &id) {
        Ok(f) => (f.address.clone(), f.network_id.clone(), f.port_id.clone()),
        Err(r) => return r,
    };
    if let Some(p) = port {
        store.fip_by_port.remove(&p);
    }
    store.fips.remove(&id);
    if let Some(n) = store.networks.iter_mut().find(|n| n.id == network) {
        n.alloc.release(&address);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn security_group_json(project: &str) -> Value {
    let id = default_sg(project);
    let rule = |direction: &str, ethertype: &str| {
        json!({"id": stable_uuid("sg-rule", &format!("{project}-{direction}-{ethertype}")),
               "security_group_id": id, "direction": direction, "ethertype": ethertype,
               "protocol": null, "port_range_min": null, "port_range_max": null,
               "remote_ip_prefix": null, "remote_group_id": if direction == "ingress" { json!(id) } else { Value::Null },
               "tenant_id": project, "project_id": project, "description": ""})
    };
    json!({"id": id, "name": "default", "description": "Default security group", "stateful": true,
           "shared": false, "tenant_id": project, "project_id": project, "tags": [], "revision_number": 1,
           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
           "security_group_rules": [rule("ingress", "IPv4"), rule("ingress", "IPv6"),
                                    rule("egress", "IPv4"), rule("egress", "IPv6")]})
}

async fn list_security_groups(
    State(sim): State<SharedSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Response {
    let groups = [security_group_json(&caller.project_id)];
    listing(
        &sim,
        "security-groups",
        groups.iter(),
        Value::clone,
        |g| g["id"].as_str().unwrap_or_default(),
        &q,
    )
}

async fn show_security_group(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if id == default_sg(&caller.project_id) {
        Json(json!({"security_group": security_group_json(&caller.project_id)})).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "SecurityGroupNotFound",
            &format!("Security group {id} does not exist"),
        )
    }
}

async fn empty_list(uri: axum::http::Uri) -> Json<Value> {
    let key = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace('-', "_");
    Json(json!({ key: [] }))
}

const EXTENSIONS: &[(&str, &str)] = &[
    ("security-group", "security-group"),
    ("router", "Neutron L3 Router"),
    ("external-net", "Neutron external network"),
    ("quotas", "Quota management support"),
    ("quota_details", "Quota details extension"),
    ("binding", "Port Binding"),
    (
        "auto-allocated-topology",
        "Auto Allocated Topology Services",
    ),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("standard-attr-revisions", "Resource revision numbers"),
    ("fip-port-details", "Floating IP Port Details Extension"),
    ("availability_zone", "Availability Zone"),
];

fn extension_json(alias: &str, name: &str) -> Value {
    json!({"alias": alias, "name": name, "description": name, "updated": "2013-01-01T00:00:00-00:00", "links": []})
}

async fn list_extensions() -> Json<Value> {
    Json(
        json!({"extensions": EXTENSIONS.iter().map(|(a, n)| extension_json(a, n)).collect::<Vec<_>>()}),
    )
}

async fn show_extension(Path(alias): Path<String>) -> Response {
    match EXTENSIONS.iter().find(|(a, _)| *a == alias) {
        Some((a, n)) => Json(json!({"extension": extension_json(a, n)})).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            &format!("Extension with alias {alias} does not exist"),
        ),
    }
}

async fn availability_zones() -> Json<Value> {
    Json(json!({"availability_zones": [
        {"name": "nova", "resource": "network", "state": "available"},
        {"name": "nova", "resource": "router", "state": "available"}
    ]}))
}

fn quota_values(store: &Store, project: &str, details: bool) -> Value {
    let ports = store
        .ports
        .values()
        .filter(|p| p.project_id == project)
        .count();
    let fips = store
        .fips
        .values()
        .filter(|f| f.project_id == project)
        .count();
    let item = |limit: i64, used: usize| {
        if details {
            json!({"limit": limit, "used": used, "reserved": 0})
        } else {
            json!(limit)
        }
    };
    json!({"quota": {
        "floatingip": item(QUOTA_FLOATINGIP, fips), "port": item(QUOTA_PORT, ports),
        "network": item(100, 0), "subnet": item(100, 0), "router": item(10, 0),
        "security_group": item(10, 1), "security_group_rule": item(100, 4),
    }})
}

async fn show_quota(State(sim): State<SharedSim>, Path(project): Path<String>) -> Json<Value> {
    Json(quota_values(&sim.store(), &project, false))
}

async fn show_quota_details(
    State(sim): State<SharedSim>,
    Path(project): Path<String>,
) -> Json<Value> {
    Json(quota_values(&sim.store(), &project, true))
}

async fn auto_topology(
    State(sim): State<SharedSim>,
    Path(project): Path<String>,
    Query(q): Params,
) -> Response {
    if q.iter().any(|(k, v)| k == "fields" && v == "dry-run") {
        return Json(json!({"auto_allocated_topology": {"dry-run": "pass"}})).into_response();
    }
    let store = sim.store();
    match store.networks.iter().find(|n| n.shared && !n.external) {
        Some(n) => Json(json!({"auto_allocated_topology": {"id": n.id, "tenant_id": project, "project_id": project}}))
            .into_response(),
        None => error(StatusCode::CONFLICT, "AutoAllocationFailure", "Deployment error: No default router:external network."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters() {
        let port = json!({"status": "DOWN", "device_owner": "compute:nova", "admin_state_up": true,
                          "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s"}]});
        assert!(matches(&port, &q(&[("status", "DOWN")])));
        assert!(!matches(&port, &q(&[("status", "ACTIVE")])));
        assert!(matches(
            &port,
            &q(&[("status", "ACTIVE"), ("status", "DOWN")])
        ));
        assert!(matches(&port, &q(&[("admin_state_up", "True")])));
        assert!(matches(&port, &q(&[("fixed_ips", "ip_address=10.0.0.5")])));
        assert!(!matches(&port, &q(&[("fixed_ips", "ip_address=10.0.0.6")])));
        assert!(matches(
            &port,
            &q(&[("unknown_filter", "x"), ("limit", "3")])
        ));
    }

    #[test]
    fn fields_projection() {
        let v = project_fields(
            json!({"a": 1, "b": 2, "c": 3}),
            &q(&[("fields", "a"), ("fields", "c")]),
        );
        assert_eq!(v, json!({"a": 1, "c": 3}));
    }
}
