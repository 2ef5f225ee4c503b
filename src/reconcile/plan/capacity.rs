//! Capacity accounting while planning: pool limits and the cloud's quota, per provider.
//!
//! The cloud reports quota usage for the whole project. What other tenants' tools use is
//! `used − (our servers seen in the cloud)`; our own use is counted from our records, so a
//! stale record whose server is gone is simply never counted and can never block a spawn.

use crate::config::Config;
use crate::config::model::PoolLabel;
use crate::reconcile::world::{CloudView, World};
use crate::state::Node;
use std::collections::BTreeMap;

/// Resources of one server (or a sum of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    pub instances: u64,
    pub cores: u64,
    pub ram_mb: u64,
    /// Volumes booted from (`boot-from-volume`) and their GB, for the pool's `max-volumes`
    /// and `max-volume-gb`.
    pub volumes: u64,
    pub volume_gb: u64,
}

impl Size {
    pub fn server(cores: u64, ram_mb: u64) -> Size {
        Size {
            instances: 1,
            cores,
            ram_mb,
            ..Size::default()
        }
    }
    /// This server booted from a new volume of `label`'s `volume-size` GB, if the label boots
    /// from volume.
    pub fn with_volume_of(mut self, label: Option<&PoolLabel>) -> Size {
        if let Some(l) = label.filter(|l| l.boot_from_volume) {
            self.volumes = 1;
            self.volume_gb = l.volume_size;
        }
        self
    }
    pub fn add(&mut self, o: Size) {
        self.instances += o.instances;
        self.cores += o.cores;
        self.ram_mb += o.ram_mb;
        self.volumes += o.volumes;
        self.volume_gb += o.volume_gb;
    }
}

/// The size a node takes: recorded at launch, else its server's flavor, else one instance;
/// plus its boot volume if its label (still configured) boots from volume.
pub fn node_size_in(config: &Config, node: &Node, view: Option<&CloudView>) -> Size {
    let label = config
        .provider(&node.provider)
        .and_then(|p| p.pools.iter().find(|pool| pool.name == node.pool))
        .and_then(|pool| pool.labels.iter().find(|l| l.name == node.label));
    node_size(node, view).with_volume_of(label)
}

/// The size a node takes: recorded at launch, else its server's flavor, else one instance.
pub fn node_size(node: &Node, view: Option<&CloudView>) -> Size {
    if let (Some(c), Some(r)) = (node.details.cores, node.details.ram) {
        return Size::server(u64::from(c), u64::from(r));
    }
    let server = view.and_then(|v| {
        node.details
            .server_id
            .as_deref()
            .and_then(|id| v.servers.iter().find(|s| s.id == id))
    });
    match server {
        Some(s) => Size::server(s.vcpus, s.ram_mb),
        None => Size::server(0, 0),
    }
}

#[derive(Debug, Default)]
struct PoolCap {
    max_servers: Option<u64>,
    max_cores: Option<u64>,
    max_ram: Option<u64>,
    max_volumes: Option<u64>,
    max_volume_gb: Option<u64>,
    used: Size,
}

#[derive(Debug, Default)]
struct ProviderCap {
    /// Cloud quota limits (`None` = unlimited or ignored).
    limit: Size3,
    /// Used by servers that are not ours.
    others: Size,
    /// Ours, counted from records (plus launches planned so far).
    ours: Size,
    pools: BTreeMap<String, PoolCap>,
}

/// Per-dimension optional limits.
#[derive(Clone, Copy, Debug, Default)]
struct Size3 {
    instances: Option<u64>,
    cores: Option<u64>,
    ram_mb: Option<u64>,
}

/// Why a server does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRoom(pub String);

pub struct Capacity {
    providers: BTreeMap<String, ProviderCap>,
}

impl Capacity {
    pub fn new(config: &Config, world: &World) -> Capacity {
        let mut providers = BTreeMap::new();
        for p in &config.providers {
            let mut cap = ProviderCap::default();
            let ignore =
                p.pools.iter().all(|pool| pool.ignore_provider_quota) && !p.pools.is_empty();
            if let Some(view) = world.view(&p.name)
                && !ignore
            {
                let l = view.limits;
                cap.limit = Size3 {
                    instances: l.instances.limit,
                    cores: l.cores.limit,
                    ram_mb: l.ram_mb.limit,
                };
                let mut ours_in_cloud = Size::default();
                for s in view
                    .servers
                    .iter()
                    .filter(|s| s.owner() == Some(p.name.as_str()))
                {
                    ours_in_cloud.add(Size::server(s.vcpus, s.ram_mb));
                }
                cap.others = Size {
                    instances: l.instances.used.saturating_sub(ours_in_cloud.instances),
                    cores: l.cores.used.saturating_sub(ours_in_cloud.cores),
                    ram_mb: l.ram_mb.used.saturating_sub(ours_in_cloud.ram_mb),
                    ..Size::default()
                };
            }
            for pool in &p.pools {
                cap.pools.insert(
                    pool.name.clone(),
                    PoolCap {
                        max_servers: pool.max_servers,
                        max_cores: pool.max_cores,
                        max_ram: pool.max_ram,
                        max_volumes: pool.max_volumes,
                        max_volume_gb: pool.max_volume_gb,
                        used: Size::default(),
                    },
                );
            }
            providers.insert(p.name.clone(), cap);
        }
        Capacity { providers }
    }

    /// Count a node that keeps (or may keep) a server in the cloud.
    pub fn count(&mut self, provider: &str, pool: &str, size: Size) {
        if let Some(p) = self.providers.get_mut(provider) {
            p.ours.add(size);
            if let Some(pc) = p.pools.get_mut(pool) {
                pc.used.add(size);
            }
        }
    }

    /// Servers counted in a pool so far.
    pub fn pool_servers(&self, provider: &str, pool: &str) -> u64 {
        self.providers
            .get(provider)
            .and_then(|p| p.pools.get(pool))
            .map_or(0, |pc| pc.used.instances)
    }

    /// Whether one more server of `size` fits in the pool and the cloud's quota.
    pub fn fits(&self, provider: &str, pool: &str, size: Size) -> Result<(), NoRoom> {
        let p = self
            .providers
            .get(provider)
            .ok_or_else(|| NoRoom(format!("provider {provider} is not configured")))?;
        let pc = p
            .pools
            .get(pool)
            .ok_or_else(|| NoRoom(format!("pool {provider}.{pool} is not configured")))?;
        let over = |limit: Option<u64>, used: u64, add: u64| limit.is_some_and(|l| used + add > l);
        if over(pc.max_servers, pc.used.instances, size.instances) {
            return Err(NoRoom(format!(
                "pool {provider}.{pool} is at max-servers {}",
                pc.max_servers.unwrap_or(0)
            )));
        }
        if over(pc.max_cores, pc.used.cores, size.cores) {
            return Err(NoRoom(format!(
                "pool {provider}.{pool} would exceed max-cores {}",
                pc.max_cores.unwrap_or(0)
            )));
        }
        if over(pc.max_ram, pc.used.ram_mb, size.ram_mb) {
            return Err(NoRoom(format!(
                "pool {provider}.{pool} would exceed max-ram {} MB",
                pc.max_ram.unwrap_or(0)
            )));
        }
        if over(pc.max_volumes, pc.used.volumes, size.volumes) {
            return Err(NoRoom(format!(
                "pool {provider}.{pool} is at max-volumes {}",
                pc.max_volumes.unwrap_or(0)
            )));
        }
        if over(pc.max_volume_gb, pc.used.volume_gb, size.volume_gb) {
            return Err(NoRoom(format!(
                "pool {provider}.{pool} would exceed max-volume-gb {} ({} GB in use)",
                pc.max_volume_gb.unwrap_or(0),
                pc.used.volume_gb
            )));
        }
        let used = |others: u64, ours: u64| others + ours;
        for (what, limit, u, add) in [
            (
                "instances",
                p.limit.instances,
                used(p.others.instances, p.ours.instances),
                size.instances,
            ),
            (
                "cores",
                p.limit.cores,
                used(p.others.cores, p.ours.cores),
                size.cores,
            ),
            (
                "ram",
                p.limit.ram_mb,
                used(p.others.ram_mb, p.ours.ram_mb),
                size.ram_mb,
            ),
        ] {
            if over(limit, u, add) {
                return Err(NoRoom(format!(
                    "cloud quota of {provider} for {what} is exhausted ({u} of {} used, {} by others)",
                    limit.unwrap_or(0),
                    match what {
                        "instances" => p.others.instances,
                        "cores" => p.others.cores,
                        _ => p.others.ram_mb,
                    }
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(yaml: &str) -> Config {
        crate::config::load_str(Path::new("nodepool.yaml"), yaml, None, &Default::default())
            .expect("valid config")
            .0
    }

    #[test]
    fn boot_volumes_count_against_max_volumes_and_max_volume_gb() {
        let cfg = config(
            "labels: [{name: vol}, {name: disk}]\n\
             providers:\n  - name: east\n    cloud: east\n    cloud-images: [{name: cirros}]\n\
             \x20   pools:\n      - name: main\n        max-volumes: 2\n        max-volume-gb: 500\n\
             \x20       labels:\n\
             \x20         - {name: vol, cloud-image: cirros, min-ram: 512, boot-from-volume: true, volume-size: 80}\n\
             \x20         - {name: disk, cloud-image: cirros, min-ram: 512}\n",
        );
        let pool = &cfg.providers[0].pools[0];
        let label = |n: &str| pool.labels.iter().find(|l| l.name == n);
        let vol = Size::server(1, 512).with_volume_of(label("vol"));
        let disk = Size::server(1, 512).with_volume_of(label("disk"));
        assert_eq!((vol.volumes, vol.volume_gb), (1, 80));
        assert_eq!((disk.volumes, disk.volume_gb), (0, 0));

        let mut cap = Capacity::new(&cfg, &World::default());
        cap.fits("east", "main", vol).unwrap();
        cap.count("east", "main", vol);
        cap.count("east", "main", vol);
        let err = cap.fits("east", "main", vol).unwrap_err();
        assert_eq!(err.0, "pool east.main is at max-volumes 2");
        // Local-disk servers are not held back by the volume limits.
        cap.fits("east", "main", disk).unwrap();
    }
}
