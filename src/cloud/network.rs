//! Neutron (network v2.0): networks by name, floating IPs, ports.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Call, Link, OpenStackClient, Retry, next_of};
use super::compute::path_id;
use super::error::{CloudError, Service};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub shared: bool,
    #[serde(default, rename = "router:external")]
    pub external: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    pub floating_network_id: String,
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    /// The port it is attached to; `None` = unattached (a leak candidate).
    #[serde(default)]
    pub port_id: Option<String>,
    /// `ACTIVE`, `DOWN` (unattached) or `ERROR`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub ip_address: String,
    #[serde(default)]
    pub subnet_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub network_id: String,
    /// The server (or router, DHCP agent, ...) using it; empty when none.
    #[serde(default)]
    pub device_id: String,
    /// `compute:<az>` for a server's port; empty for a bare port.
    #[serde(default)]
    pub device_owner: String,
    /// `ACTIVE`, `DOWN` or `BUILD`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// Filters of `GET /v2.0/floatingips`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloatingIpQuery {
    pub port_id: Option<String>,
    pub status: Option<String>,
    pub floating_network_id: Option<String>,
    pub floating_ip_address: Option<String>,
}

/// Filters of `GET /v2.0/ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortQuery {
    pub status: Option<String>,
    pub device_owner: Option<String>,
    pub device_id: Option<String>,
    pub network_id: Option<String>,
}

fn filters(pairs: [(&str, &Option<String>); 4]) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
        .collect()
}

#[derive(Deserialize)]
struct NetworksPage {
    networks: Vec<Network>,
    #[serde(default)]
    networks_links: Vec<Link>,
}

#[derive(Deserialize)]
struct FloatingIpsPage {
    floatingips: Vec<FloatingIp>,
    #[serde(default)]
    floatingips_links: Vec<Link>,
}

#[derive(Deserialize)]
struct PortsPage {
    ports: Vec<Port>,
    #[serde(default)]
    ports_links: Vec<Link>,
}

#[derive(Deserialize)]
struct OneFloatingIp {
    floatingip: FloatingIp,
}

impl OpenStackClient {
    /// Networks visible to the project, optionally only those named `name` or only external ones.
    pub async fn list_networks(
        &self,
        name: Option<&str>,
        external_only: bool,
    ) -> Result<Vec<Network>, CloudError> {
        let mut query = Vec::new();
        if let Some(n) = name {
            query.push(("name".to_owned(), n.to_owned()));
        }
        if external_only {
            query.push(("router:external".to_owned(), "True".to_owned()));
        }
        self.paginate(Service::Network, "/networks", query, |p: NetworksPage| {
            (p.networks, next_of(&p.networks_links))
        })
        .await
    }

    /// The one network named (or with id) `name_or_id`: how nodepool's `networks:` labels resolve.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Network, CloudError> {
        let by_name = self.list_networks(Some(name_or_id), false).await?;
        match by_name.len() {
            1 => return Ok(by_name.into_iter().next().expect("one")),
            0 => {}
            count => {
                return Err(CloudError::Ambiguous {
                    kind: "network",
                    name: name_or_id.to_owned(),
                    count,
                });
            }
        }
        #[derive(Deserialize)]
        struct One {
            network: Network,
        }
        let path = format!("/networks/{}", path_id(name_or_id)?);
        let one: One = self.send_json(Call::get(Service::Network, &path)).await?;
        Ok(one.network)
    }

    pub async fn list_floating_ips(
        &self,
        q: &FloatingIpQuery,
    ) -> Result<Vec<FloatingIp>, CloudError> {
        let query = filters([
            ("port_id", &q.port_id),
            ("status", &q.status),
            ("floating_network_id", &q.floating_network_id),
            ("floating_ip_address", &q.floating_ip_address),
        ]);
        self.paginate(
            Service::Network,
            "/floatingips",
            query,
            |p: FloatingIpsPage| (p.floatingips, next_of(&p.floatingips_links)),
        )
        .await
    }

    /// Allocates a floating IP on the external network `network_id`, attached to `port_id` if
    /// given. Not retried after an ambiguous failure (that could allocate two).
    pub async fn create_floating_ip(
        &self,
        network_id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp, CloudError> {
        let mut fip = serde_json::Map::new();
        fip.insert("floating_network_id".into(), json!(network_id));
        if let Some(p) = port_id {
            fip.insert("port_id".into(), json!(p));
        }
        let body = json!({ "floatingip": fip });
        let one: OneFloatingIp = self
            .send_json(Call::json(
                Service::Network,
                Method::POST,
                "/floatingips",
                &body,
                Retry::Unsafe,
            ))
            .await?;
        Ok(one.floatingip)
    }

    /// Points a floating IP at a port (`Some`) or detaches it (`None`). A PUT of the whole
    /// association: safe to repeat.
    pub async fn set_floating_ip_port(
        &self,
        id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp, CloudError> {
        let path = format!("/floatingips/{}", path_id(id)?);
        let body = json!({ "floatingip": { "port_id": port_id } });
        let one: OneFloatingIp = self
            .send_json(Call::json(
                Service::Network,
                Method::PUT,
                &path,
                &body,
                Retry::Idempotent,
            ))
            .await?;
        Ok(one.floatingip)
    }

    pub async fn attach_floating_ip(
        &self,
        id: &str,
        port_id: &str,
    ) -> Result<FloatingIp, CloudError> {
        self.set_floating_ip_port(id, Some(port_id)).await
    }

    pub async fn detach_floating_ip(&self, id: &str) -> Result<FloatingIp, CloudError> {
        self.set_floating_ip_port(id, None).await
    }

    /// `DELETE /v2.0/floatingips/{id}`; `NotFound` means it is already gone.
    pub async fn delete_floating_ip(&self, id: &str) -> Result<(), CloudError> {
        let path = format!("/floatingips/{}", path_id(id)?);
        self.send_empty(Call::delete(Service::Network, &path)).await
    }

    pub async fn list_ports(&self, q: &PortQuery) -> Result<Vec<Port>, CloudError> {
        let query = filters([
            ("status", &q.status),
            ("device_owner", &q.device_owner),
            ("device_id", &q.device_id),
            ("network_id", &q.network_id),
        ]);
        self.paginate(Service::Network, "/ports", query, |p: PortsPage| {
            (p.ports, next_of(&p.ports_links))
        })
        .await
    }

    /// Creates a bare port on a network (it stays `DOWN` with no device). Nodepool never needs
    /// this; tools and tests do (a leaked-port stand-in). Not retried after an ambiguous failure.
    pub async fn create_port(&self, network_id: &str, name: &str) -> Result<Port, CloudError> {
        #[derive(Deserialize)]
        struct One {
            port: Port,
        }
        let body = json!({ "port": { "network_id": network_id, "name": name } });
        let one: One = self
            .send_json(Call::json(
                Service::Network,
                Method::POST,
                "/ports",
                &body,
                Retry::Unsafe,
            ))
            .await?;
        Ok(one.port)
    }

    /// `DELETE /v2.0/ports/{id}`; `NotFound` means it is already gone.
    pub async fn delete_port(&self, id: &str) -> Result<(), CloudError> {
        let path = format!("/ports/{}", path_id(id)?);
        self.send_empty(Call::delete(Service::Network, &path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_ip_shapes() {
        // api-surface.md §4 (api-ref), attached.
        let p: FloatingIpsPage = serde_json::from_str(
            r#"{"floatingips": [{"id": "2f245a7b", "floating_ip_address": "172.24.4.228", "floating_network_id": "376da547",
              "fixed_ip_address": "10.0.0.3", "port_id": "ce705c24", "router_id": "d23abc8d", "status": "ACTIVE",
              "project_id": "4c1a", "tenant_id": "4c1a", "description": "", "created_at": "2016-12-21T01:36:04Z",
              "updated_at": "2016-12-21T01:36:04Z", "revision_number": 1, "tags": [],
              "port_details": {"status": "ACTIVE", "name": "", "admin_state_up": true, "network_id": "n",
                               "device_owner": "compute:nova", "mac_address": "fa:16:3e:b1:3b:30", "device_id": "s"}},
             {"id": "9", "floating_ip_address": "172.24.4.9", "floating_network_id": "376da547",
              "fixed_ip_address": null, "port_id": null, "status": "DOWN"}]}"#,
        )
        .unwrap();
        assert_eq!(p.floatingips[0].port_id.as_deref(), Some("ce705c24"));
        assert_eq!(p.floatingips[1].port_id, None);
        assert_eq!(p.floatingips[1].status, "DOWN");
        assert!(next_of(&p.floatingips_links).is_none());
    }

    #[test]
    fn port_and_network_shapes() {
        let p: PortsPage = serde_json::from_str(
            r#"{"ports": [{"id": "46d4bfb9", "name": "", "network_id": "a87cc70a", "mac_address": "fa:16:3e:23:fd:d7",
              "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "a0304c3a"}], "device_id": "",
              "device_owner": "", "status": "DOWN", "admin_state_up": true, "security_groups": ["sg"],
              "binding:vif_type": "ovs", "created_at": "2026-11-23T23:00:00Z", "revision_number": 1, "tags": []}],
              "ports_links": [{"rel": "next", "href": "http://127.0.0.1:9696/v2.0/ports?limit=1&marker=46d4bfb9"}]}"#,
        )
        .unwrap();
        assert_eq!(p.ports[0].status, "DOWN");
        assert_eq!(p.ports[0].fixed_ips[0].ip_address, "10.0.0.5");
        assert!(next_of(&p.ports_links).unwrap().contains("marker=46d4bfb9"));
        let n: NetworksPage = serde_json::from_str(
            r#"{"networks": [{"id": "n1", "name": "public", "status": "ACTIVE", "subnets": [], "shared": false,
               "router:external": true, "admin_state_up": true, "mtu": 1450}]}"#,
        )
        .unwrap();
        assert!(n.networks[0].external);
    }

    #[test]
    fn filter_pairs() {
        let q = PortQuery {
            status: Some("DOWN".into()),
            device_owner: Some("compute:nova".into()),
            ..Default::default()
        };
        assert_eq!(
            filters([
                ("status", &q.status),
                ("device_owner", &q.device_owner),
                ("device_id", &q.device_id),
                ("network_id", &q.network_id)
            ]),
            vec![
                ("status".to_owned(), "DOWN".to_owned()),
                ("device_owner".to_owned(), "compute:nova".to_owned())
            ]
        );
    }
}
