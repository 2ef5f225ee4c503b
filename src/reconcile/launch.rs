//! What a new server looks like: its name, metadata (ownership + instance properties) and the
//! Nova create request, from the config and a planned `Boot`.

use super::plan::Boot;
use super::world::meta;
use crate::cloud::{BootVolume, CreateServer, ServerNetworks};
use crate::config::Config;
use crate::config::model::{OpenStackProvider, Pool, PoolLabel};
use crate::state::NodeRequest;
use std::collections::BTreeMap;

/// The port on which a node's SSH host keys are scanned before it is ready: when its pool
/// checks host keys (`host-key-checking`, default on) and it is reached over SSH (connection
/// type `ssh` or `network_cli`); `None` when it is ready as soon as its server is ACTIVE.
pub fn keyscan_port(pool: &Pool, details: &crate::state::NodeDetails) -> Option<u16> {
    let ctype = details.connection_type.as_deref().unwrap_or("ssh");
    (pool.host_key_checking && matches!(ctype, "ssh" | "network_cli"))
        .then(|| details.connection_port.unwrap_or(22))
}

/// Replace `{a.b}` fields in `template` from `fields`; unknown fields are left as written.
pub fn format_fields(template: &str, fields: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if fields.contains_key(&after[..close]) => {
                out.push_str(&fields[&after[..close]]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The server (host) name of a node: the provider's `hostname-format`.
pub fn hostname(provider: &OpenStackProvider, label: &str, node_id: &str) -> String {
    let fields = BTreeMap::from([
        ("label.name", label.to_owned()),
        ("provider.name", provider.name.clone()),
        ("node.id", node_id.to_owned()),
    ]);
    format_fields(&provider.hostname_format, &fields)
}

/// Everything needed to boot one node.
pub struct LaunchSpec<'c> {
    pub config: &'c Config,
    pub provider: &'c OpenStackProvider,
    pub pool: &'c Pool,
    pub label: &'c PoolLabel,
    pub node_id: &'c str,
    pub hostname: &'c str,
    pub boot: &'c Boot,
    pub request: Option<&'c NodeRequest>,
    /// Network name → id in this cloud.
    pub network_ids: &'c BTreeMap<String, String>,
}

/// The server metadata: instance properties, dynamic instance properties, then our ownership
/// keys (which always win, so a property can never disguise a server as someone else's).
pub fn metadata(spec: &LaunchSpec<'_>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in &spec.label.instance_properties {
        m.insert(k.clone(), v.0.clone());
    }
    let mut fields = BTreeMap::from([
        ("node.id", spec.node_id.to_owned()),
        ("node.label", spec.label.name.clone()),
        ("node.provider", spec.provider.name.clone()),
        ("node.pool", spec.pool.name.clone()),
        ("node.hostname", spec.hostname.to_owned()),
    ]);
    if let Some(r) = spec.request {
        fields.insert("request.id", r.id.clone());
        fields.insert("request.requestor", r.requestor.clone());
        fields.insert("request.tenant_name", r.tenant.clone().unwrap_or_default());
        fields.insert("request.priority", r.priority.to_string());
    }
    for (k, v) in &spec.label.dynamic_instance_properties {
        m.insert(k.clone(), format_fields(&v.0, &fields));
    }
    m.insert(meta::PROVIDER.into(), spec.provider.name.clone());
    m.insert(meta::POOL.into(), spec.pool.name.clone());
    m.insert(meta::NODE_ID.into(), spec.node_id.to_owned());
    m.insert(meta::LABEL.into(), spec.label.name.clone());
    m.insert(
        meta::GROUPS.into(),
        format!("{},{}", spec.provider.name, spec.label.name),
    );
    m
}

/// The Nova create request.
pub fn create_request(spec: &LaunchSpec<'_>) -> CreateServer {
    let mut req = CreateServer::new(spec.hostname, &spec.boot.flavor_id, &spec.boot.image_id);
    let names = spec.label.networks.as_ref().unwrap_or(&spec.pool.networks);
    req.networks = if names.is_empty() {
        ServerNetworks::Auto
    } else {
        ServerNetworks::Ids(
            names
                .iter()
                .map(|n| {
                    spec.network_ids
                        .get(n)
                        .cloned()
                        .unwrap_or_else(|| n.clone())
                })
                .collect(),
        )
    };
    req.key_name = spec.label.key_name.clone();
    req.availability_zone = spec.boot.az.clone();
    req.user_data = spec.label.userdata.clone();
    req.config_drive = config_drive(spec);
    req.metadata = metadata(spec);
    req.security_groups = spec.pool.security_groups.clone();
    if spec.label.boot_from_volume {
        req.boot_volume = Some(BootVolume {
            size_gb: u32::try_from(spec.label.volume_size).unwrap_or(u32::MAX),
            delete_on_termination: true,
        });
    }
    req
}

fn config_drive(spec: &LaunchSpec<'_>) -> bool {
    let from_diskimage = spec.label.diskimage.as_ref().and_then(|d| {
        spec.provider
            .diskimages
            .iter()
            .find(|x| &x.name == d)
            .and_then(|x| x.config_drive)
    });
    let from_cloud_image = spec.label.cloud_image.as_ref().and_then(|c| {
        spec.provider
            .cloud_images
            .iter()
            .find(|x| &x.name == c)
            .and_then(|x| x.config_drive)
    });
    // Upstream's default is a config drive (cloud-init needs one where there is no metadata
    // service); `config-drive: false` turns it off.
    from_diskimage.or(from_cloud_image).unwrap_or(true)
}

/// Login details of a node booted from `label`: (username, connection type, port, python path,
/// shell type).
pub fn connection(
    config: &Config,
    provider: &OpenStackProvider,
    label: &PoolLabel,
) -> (String, String, u16, String, Option<String>) {
    let default_port = |t: &str| if t == "winrm" { 5986 } else { 22 };
    if let Some(d) = &label.diskimage {
        let pd = provider.diskimages.iter().find(|x| &x.name == d);
        let di = config.diskimage(d);
        let ctype = pd
            .and_then(|x| x.connection_type.clone())
            .unwrap_or_else(|| "ssh".into());
        let port = pd
            .and_then(|x| x.connection_port)
            .unwrap_or_else(|| default_port(&ctype));
        return (
            di.map_or_else(|| "zuul".into(), |d| d.username.clone()),
            ctype,
            port,
            di.map_or_else(|| "auto".into(), |d| d.python_path.clone()),
            di.and_then(|d| d.shell_type.clone()),
        );
    }
    let ci = label
        .cloud_image
        .as_ref()
        .and_then(|c| provider.cloud_images.iter().find(|x| &x.name == c));
    let ctype = ci
        .and_then(|x| x.connection_type.clone())
        .unwrap_or_else(|| "ssh".into());
    let port = ci
        .and_then(|x| x.connection_port)
        .unwrap_or_else(|| default_port(&ctype));
    (
        ci.and_then(|x| x.username.clone())
            .unwrap_or_else(|| "zuul".into()),
        ctype,
        port,
        ci.and_then(|x| x.python_path.clone())
            .unwrap_or_else(|| "auto".into()),
        ci.and_then(|x| x.shell_type.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = BTreeMap::from([
            ("node.id", "42".to_owned()),
            ("request.tenant_name", "t".to_owned()),
        ]);
        assert_eq!(
            format_fields("Tenant is {request.tenant_name}", &f),
            "Tenant is t"
        );
        assert_eq!(format_fields("{node.id}-{unknown}-{", &f), "42-{unknown}-{");
    }
}
