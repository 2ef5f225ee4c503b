//! `apply`: take the writer lease, refuse a stale saved plan, carry the plan out, record the
//! config revision.

use super::{OpError, Workspace};
use crate::reconcile::apply::{Applier, ApplyOptions, ApplyReport, Reporter};
use crate::reconcile::render::PlanDocument;
use crate::reconcile::stale;
use crate::state::{ConfigStatus, LeaseGuard, NewConfigRevision, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the writer lease lasts without renewal (a killed holder frees it after this).
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Who holds the lease, for the message another writer gets.
pub fn holder(what: &str) -> String {
    format!("{what} (pid {} on {})", std::process::id(), hostname())
}

/// Take the writer lease, or fail naming its holder. A lease left by a process of this host
/// that no longer runs (killed with SIGKILL) is broken at once instead of waiting for it to
/// expire.
pub fn lease(store: &mut Store, what: &str) -> Result<LeaseGuard, OpError> {
    match store.acquire_lease(&holder(what), LEASE_TTL) {
        Err(crate::state::StateError::LeaseHeld {
            holder: h, since, ..
        }) if holder_is_dead(&h) => {
            tracing::warn!(holder = %h, "breaking the writer lease of a process that no longer runs");
            store.write(|w| w.break_lease(&h, since))?;
            Ok(store.acquire_lease(&holder(what), LEASE_TTL)?)
        }
        other => Ok(other?),
    }
}

/// Whether a lease holder named by [`holder`] was a process of this host that is gone.
fn holder_is_dead(h: &str) -> bool {
    let this_host = holder("");
    let host_of = |s: &str| {
        s.rsplit_once(" on ")
            .map(|(_, host)| host.trim_end_matches(')').to_owned())
    };
    let pid = h
        .rsplit_once("(pid ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|p| p.parse::<u32>().ok());
    match (pid, host_of(h), host_of(&this_host)) {
        (Some(pid), Some(theirs), Some(ours)) if theirs == ours => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Why a saved plan may not be applied any more, if it may not.
pub async fn staleness(
    ws: &mut Workspace,
    doc: &PlanDocument,
    now: i64,
) -> Result<Option<String>, OpError> {
    if doc.config_revision != ws.revision {
        return Ok(Some(format!(
            "the config changed since the plan was made (plan: {}, now: {})",
            doc.config_revision, ws.revision
        )));
    }
    let stamp = ws.store.read().stamp()?;
    if stamp.lineage != doc.lineage {
        return Ok(Some(format!(
            "the plan was made against another database (lineage {}, this one is {})",
            doc.lineage, stamp.lineage
        )));
    }
    if stamp.serial != doc.serial {
        return Ok(Some(format!(
            "the database changed since the plan was made (serial {} then, {} now)",
            doc.serial, stamp.serial
        )));
    }
    let (world, _) = super::plan::observe(ws, now).await?;
    let now_fp = stale::fingerprints(&doc.plan, &world);
    let moved: Vec<&String> = doc
        .fingerprints
        .iter()
        .filter(|(addr, fp)| now_fp.get(*addr) != Some(fp))
        .map(|(addr, _)| addr)
        .collect();
    if moved.is_empty() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "what the plan acts on has changed since it was made: {}",
            moved
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Journal entries left `pending` or `running` by an apply that was killed are closed as
/// failed: the plan just made observed the world as that apply left it and finishes the job.
fn close_interrupted(store: &mut Store, lease: &LeaseGuard) -> Result<usize, OpError> {
    Ok(store.write_under_lease(lease, |w| {
        let open = w.read().unfinished_journal()?;
        for e in &open {
            w.journal_fail(
                e.id,
                "interrupted: the apply stopped before this finished; a later plan took over",
            )?;
        }
        Ok(open.len())
    })?)
}

/// Carry out `doc` under `lease`, then record the config revision as applied (or failed).
pub async fn apply(
    ws: Workspace,
    doc: &PlanDocument,
    lease: LeaseGuard,
    mut options: ApplyOptions,
    reporter: Reporter,
) -> Result<(ApplyReport, Workspace), OpError> {
    if options.build_dirs.is_none() {
        options.build_dirs = Some(ws.build_dirs());
    }
    let Workspace {
        paths,
        loaded,
        revision,
        store,
        clients,
        unresolved,
    } = ws;
    let mut store = store;
    close_interrupted(&mut store, &lease)?;
    let config = Arc::new(loaded.config.clone());
    let store = Arc::new(Mutex::new(store));
    let lease = Arc::new(Mutex::new(lease));
    let renewer = {
        let lease = Arc::clone(&lease);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_TTL / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = lease.lock().expect("lease lock").renew() {
                    tracing::error!(error = %e, "cannot renew the writer lease");
                }
            }
        })
    };
    let applier = Applier {
        config,
        store: Arc::clone(&store),
        lease: Arc::clone(&lease),
        clients: clients.clone(),
        plan_id: format!("{}-{}", doc.created_at, uuid::Uuid::new_v4().simple()),
        options,
        reporter,
        built: Mutex::new(Default::default()),
        uploaded: Mutex::new(Default::default()),
        external_networks: Mutex::new(Default::default()),
    };
    let result = applier.apply(&doc.plan).await;
    drop(applier);
    renewer.abort();
    // Wait for the task to be gone, so its handle on the lease is released.
    let _ = renewer.await;
    let report = result.map_err(|e| OpError::Refused(e.to_string()))?;
    let store = Arc::try_unwrap(store)
        .map_err(|_| OpError::Refused("the store is still shared after apply".into()))?
        .into_inner()
        .expect("store lock");
    let lease = Arc::try_unwrap(lease)
        .map_err(|_| OpError::Refused("the lease is still shared after apply".into()))?
        .into_inner()
        .expect("lease lock");
    let mut store = store;
    let status = if report.failed.is_empty() {
        ConfigStatus::Ok
    } else {
        ConfigStatus::Failed
    };
    let errors = (!report.failed.is_empty()).then(|| {
        report
            .failed
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    store.write_under_lease(&lease, |w| {
        w.record_config_revision(&NewConfigRevision {
            revision: revision.clone(),
            source: loaded.path.display().to_string(),
            status,
            errors,
        })
        .map(|_| ())
    })?;
    lease.release()?;
    Ok((
        report,
        Workspace {
            paths,
            loaded,
            revision,
            store,
            clients,
            unresolved,
        },
    ))
}
