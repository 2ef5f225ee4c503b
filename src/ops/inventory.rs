//! What the clouds hold, for the read-only commands (`list`, `alien-image-list`): these also
//! ask the clouds, which is how an operator checks a provider's credentials.

use super::Workspace;
use crate::cloud::{ImageQuery, ServerQuery};
use crate::reconcile::world::meta;
use std::collections::{BTreeMap, BTreeSet};

/// Per provider: server id → status, or why the cloud could not be listed.
pub async fn servers(ws: &Workspace) -> BTreeMap<String, Result<BTreeMap<String, String>, String>> {
    let calls = ws.clients.iter().map(|(name, c)| async move {
        let r = c
            .list_servers(&ServerQuery::default())
            .await
            .map(|ss| {
                ss.into_iter()
                    .map(|s| (s.id, s.status.as_str().to_owned()))
                    .collect()
            })
            .map_err(|e| e.to_string());
        (name.clone(), r)
    });
    let mut out: BTreeMap<_, _> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect();
    for (p, why) in &ws.unresolved {
        out.insert(p.clone(), Err(format!("credentials: {why}")));
    }
    out
}

/// Per provider: (image name, image id) of images carrying our ownership properties that no
/// upload record owns, or why the cloud could not be listed.
pub async fn alien_images(
    ws: &Workspace,
) -> BTreeMap<String, Result<Vec<(String, String)>, String>> {
    let known: BTreeSet<String> = ws
        .store
        .read()
        .uploads()
        .map(|u| {
            u.into_iter()
                .filter_map(|u| u.details.external_id)
                .collect()
        })
        .unwrap_or_default();
    let known = &known;
    let calls = ws.clients.iter().map(|(name, c)| async move {
        let q = ImageQuery {
            properties: BTreeMap::from([(meta::PROVIDER.to_owned(), name.clone())]),
            ..ImageQuery::default()
        };
        let r = c
            .list_images(&q)
            .await
            .map(|imgs| {
                imgs.into_iter()
                    .filter(|i| !known.contains(&i.id))
                    .map(|i| (i.name.unwrap_or_default(), i.id))
                    .collect()
            })
            .map_err(|e| e.to_string());
        (name.clone(), r)
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}
