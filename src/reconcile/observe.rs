//! Observe: fill a [`World`] from the state store and the clouds (one paginated list per kind).
//!
//! Invariant: observing never changes anything — no cloud mutation, no database write. A
//! provider is either observed completely (every list call succeeded) or reported
//! `Unavailable`, so the planner never mistakes a failed list for an empty cloud.

use super::world::{
    CloudState, CloudView, ObservedFlavor, ObservedFloatingIp, ObservedImage, ObservedLimits,
    ObservedPort, ObservedServer, Quota, World,
};
use crate::cloud::{self, CloudError, ImageQuery, OpenStackClient, PortQuery, ServerQuery};
use crate::state::{Stamp, StateError, Store};
use std::collections::BTreeMap;

/// The database part of a world, read in one consistent snapshot, with its stamp.
pub fn read_store(store: &mut Store, now: i64) -> Result<(World, Stamp), StateError> {
    let snap = store.snapshot()?;
    let r = snap.read();
    let world = World {
        now,
        nodes: r.nodes()?,
        requests: r.requests()?,
        builds: r.builds()?,
        uploads: r.uploads()?,
        image_pauses: r.image_pauses()?,
        leak_sightings: r.leak_sightings()?,
        clouds: BTreeMap::new(),
        image_formats: BTreeMap::new(),
    };
    let stamp = r.stamp()?;
    Ok((world, stamp))
}

/// Observe every provider's cloud at once; each gets its own state, so one broken cloud
/// never hides the others.
pub async fn observe_clouds(
    clients: &BTreeMap<String, OpenStackClient>,
) -> BTreeMap<String, CloudState> {
    let futures = clients.iter().map(|(name, client)| async move {
        let state = match observe_cloud(client).await {
            Ok(view) => CloudState::Observed(view),
            Err(e) => CloudState::Unavailable {
                error: e.to_string(),
            },
        };
        (name.clone(), state)
    });
    futures_util::future::join_all(futures)
        .await
        .into_iter()
        .collect()
}

/// Treat a missing network service (a cloud without Neutron) as "no floating IPs, no ports".
fn optional<T: Default>(r: Result<T, CloudError>) -> Result<T, CloudError> {
    match r {
        Err(CloudError::NoEndpoint { .. }) => Ok(T::default()),
        other => other,
    }
}

/// Items per page asked of list calls.
const PAGE: u32 = 1000;

/// One complete observation of a cloud: servers, images, floating IPs, DOWN ports, flavors
/// and limits, each with one (paginated) list call.
pub async fn observe_cloud(client: &OpenStackClient) -> Result<CloudView, CloudError> {
    let down = PortQuery {
        status: Some("DOWN".into()),
        ..PortQuery::default()
    };
    // The services' largest pages (Nova's and Glance's default `max_limit`/`api_limit_max`):
    // Glance's default page is 25 images, which would make a large cloud cost hundreds of calls.
    let servers_q = ServerQuery {
        page_size: Some(PAGE),
        ..ServerQuery::default()
    };
    let images_q = ImageQuery {
        page_size: Some(PAGE),
        ..ImageQuery::default()
    };
    let (servers, images, fips, ports, flavors, limits) = tokio::join!(
        client.list_servers(&servers_q),
        client.list_images(&images_q),
        async { optional(client.list_floating_ips(&Default::default()).await) },
        async { optional(client.list_ports(&down).await) },
        client.list_flavors(),
        client.limits(),
    );
    Ok(CloudView {
        servers: servers?.into_iter().map(server).collect(),
        images: images?.into_iter().map(image).collect(),
        floating_ips: fips?
            .into_iter()
            .map(|f| ObservedFloatingIp {
                id: f.id,
                address: f.floating_ip_address,
                port_id: f.port_id,
                status: f.status,
            })
            .collect(),
        ports: ports?
            .into_iter()
            .map(|p| ObservedPort {
                id: p.id,
                status: p.status,
                device_owner: p.device_owner,
                device_id: p.device_id,
            })
            .collect(),
        flavors: flavors?
            .into_iter()
            .map(|f| ObservedFlavor {
                id: f.id,
                name: f.name,
                vcpus: u64::from(f.vcpus),
                ram_mb: f.ram_mb,
                disabled: f.disabled,
            })
            .collect(),
        limits: limits_of(limits?),
    })
}

fn quota(q: cloud::Quota) -> Quota {
    Quota {
        limit: q.limit,
        used: q.used,
    }
}

fn limits_of(l: cloud::Limits) -> ObservedLimits {
    ObservedLimits {
        instances: quota(l.instances),
        cores: quota(l.cores),
        ram_mb: quota(l.ram_mb),
    }
}

fn server(s: cloud::Server) -> ObservedServer {
    let status = s.status.as_str().to_owned();
    ObservedServer {
        id: s.id,
        name: s.name,
        status,
        metadata: s.metadata,
        created: s.created.map_or(0, |t| t.timestamp()),
        vcpus: s.flavor.vcpus.map_or(0, u64::from),
        ram_mb: s.flavor.ram_mb.unwrap_or(0),
        fault: s.fault.map(|f| f.message),
        public_ipv4: s.public_ipv4.map(|a| a.to_string()),
        private_ipv4: s.private_ipv4.map(|a| a.to_string()),
        public_ipv6: s.public_ipv6.map(|a| a.to_string()),
        az: s.availability_zone,
    }
}

fn image(i: cloud::Image) -> ObservedImage {
    ObservedImage {
        id: i.id,
        name: i.name.unwrap_or_default(),
        status: i.status.as_str().to_owned(),
        created: i.created_at.map_or(0, |t| t.timestamp()),
        properties: i.properties,
    }
}
