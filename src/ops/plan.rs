//! `plan`: observe the world, compute the plan, and describe it as a saved-plan document.

use super::{OpError, Workspace};
use crate::reconcile::render::{self, PlanDocument};
use crate::reconcile::world::{CloudState, World};
use crate::reconcile::{observe, stale};

/// A plan with what it was made from.
pub struct Planned {
    pub doc: PlanDocument,
    /// The config change since the last applied revision, when it can be shown.
    pub diff: Option<String>,
    pub world: World,
}

/// Everything `plan` observes: the database snapshot, then every cloud (in parallel).
pub async fn observe(
    ws: &mut Workspace,
    now: i64,
) -> Result<(World, crate::state::Stamp), OpError> {
    let (mut world, stamp) = observe::read_store(&mut ws.store, now)?;
    world.clouds = observe::observe_clouds(&ws.clients).await;
    for (provider, client) in &ws.clients {
        if let Some(f) = &client.credentials().image_format {
            world.image_formats.insert(provider.clone(), f.clone());
        }
    }
    for (provider, why) in &ws.unresolved {
        world.clouds.insert(
            provider.clone(),
            CloudState::Unavailable {
                error: format!("credentials: {why}"),
            },
        );
    }
    // Providers that only the database still knows (removed from the config).
    for n in &world.nodes {
        if !world.clouds.contains_key(&n.provider) {
            world.clouds.insert(
                n.provider.clone(),
                CloudState::Unavailable {
                    error: format!(
                        "provider {} is no longer in the config, so its credentials are unknown; \
                         put it back with max-servers: 0 to drain its nodes",
                        n.provider
                    ),
                },
            );
        }
    }
    Ok((world, stamp))
}

pub async fn plan(ws: &mut Workspace, now: i64) -> Result<Planned, OpError> {
    plan_with(ws, now, &crate::reconcile::plan::PlanOptions::default()).await
}

pub async fn plan_with(
    ws: &mut Workspace,
    now: i64,
    opts: &crate::reconcile::plan::PlanOptions,
) -> Result<Planned, OpError> {
    let (world, stamp) = observe(ws, now).await?;
    let p = crate::reconcile::plan::plan_with(ws.config(), &world, opts);
    let fingerprints = stale::fingerprints(&p, &world);
    let doc = PlanDocument::new(p, ws.revision.clone(), stamp.lineage, stamp.serial, now)
        .with_fingerprints(fingerprints);
    let diff = config_diff(ws)?;
    Ok(Planned { doc, diff, world })
}

/// The config diff since the last applied revision, when both texts are known: a config
/// kept in git has its history; a plain file does not (its revision is a hash of its text).
fn config_diff(ws: &Workspace) -> Result<Option<String>, OpError> {
    let Some(last) = ws.store.read().last_applied_config()? else {
        return Ok(None);
    };
    if last.revision == ws.revision {
        return Ok(None);
    }
    Ok(
        super::history::text_at(&ws.loaded.path, &last.revision).and_then(|old| {
            render::config_diff(
                &format!("a/nodepool.yaml ({})", last.revision),
                &old,
                &format!("b/nodepool.yaml ({})", ws.revision),
                &ws.loaded.text,
            )
        }),
    )
}
