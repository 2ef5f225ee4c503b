//! Leak sightings: cloud resources that look like ours but that no row owns, counted across
//! consecutive observations so that only something seen twice in a row is cleaned up.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, now_unix};

text_enum! {
    /// The kind of a possibly leaked resource.
    pub enum LeakKind ("leak kind") {
        Server => "server",
        FloatingIp => "floating_ip",
        Port => "port",
        Image => "image",
    }
}

/// A resource seen unowned on `count` consecutive observations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakSighting {
    pub provider: String,
    pub kind: LeakKind,
    pub external_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: u32,
}

const SELECT: &str =
    "SELECT provider, kind, external_id, first_seen, last_seen, count FROM leak_sightings";

fn from_row(r: &Row<'_>) -> rusqlite::Result<LeakSighting> {
    Ok(LeakSighting {
        provider: r.get(0)?,
        kind: r.get(1)?,
        external_id: r.get(2)?,
        first_seen: r.get(3)?,
        last_seen: r.get(4)?,
        count: r.get(5)?,
    })
}

impl WriteTx<'_> {
    /// Records one complete observation of `provider`'s unowned resources of `kind`: ids seen
    /// again get their count bumped, new ids start at 1, and ids not seen this time are
    /// forgotten (the streak is broken). Returns the current sightings of that kind, id order.
    pub fn observe_leaks(
        &self,
        provider: &str,
        kind: LeakKind,
        seen: &[String],
    ) -> Result<Vec<LeakSighting>, StateError> {
        let now = now_unix();
        let seen: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        let known: BTreeMap<String, LeakSighting> = self
            .read()
            .leak_sightings_of(provider, kind)?
            .into_iter()
            .map(|s| (s.external_id.clone(), s))
            .collect();
        for id in known.keys().filter(|id| !seen.contains(id.as_str())) {
            self.tx
                .prepare_cached(
                    "DELETE FROM leak_sightings WHERE provider = ?1 AND kind = ?2 AND external_id = ?3",
                )?
                .execute(params![provider, kind, id])?;
        }
        for id in &seen {
            if known.contains_key(*id) {
                self.tx
                    .prepare_cached(
                        "UPDATE leak_sightings SET count = count + 1, last_seen = ?4 \
                         WHERE provider = ?1 AND kind = ?2 AND external_id = ?3",
                    )?
                    .execute(params![provider, kind, id, now])?;
            } else {
                self.tx
                    .prepare_cached(
                        "INSERT INTO leak_sightings (provider, kind, external_id, first_seen, \
                         last_seen, count) VALUES (?1, ?2, ?3, ?4, ?4, 1)",
                    )?
                    .execute(params![provider, kind, id, now])?;
            }
        }
        self.read().leak_sightings_of(provider, kind)
    }
}

impl Reader<'_> {
    /// Current sightings of one provider and kind, id order.
    pub fn leak_sightings_of(
        &self,
        provider: &str,
        kind: LeakKind,
    ) -> Result<Vec<LeakSighting>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT} WHERE provider = ?1 AND kind = ?2 ORDER BY external_id"
        ))?;
        let rows = stmt.query_map(params![provider, kind], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every sighting, by provider, kind, id.
    pub fn leak_sightings(&self) -> Result<Vec<LeakSighting>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} ORDER BY provider, kind, external_id"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn counts(s: &[LeakSighting]) -> Vec<(&str, u32)> {
        s.iter()
            .map(|s| (s.external_id.as_str(), s.count))
            .collect()
    }

    #[test]
    fn consecutive_observations() {
        let mut store = Store::open_in_memory().unwrap();
        let obs = |store: &mut Store, list: &[&str]| {
            store
                .write(|w| w.observe_leaks("p", LeakKind::Server, &ids(list)))
                .unwrap()
        };
        assert_eq!(
            counts(&obs(&mut store, &["a", "b"])),
            vec![("a", 1), ("b", 1)]
        );
        assert_eq!(
            counts(&obs(&mut store, &["a", "c"])),
            vec![("a", 2), ("c", 1)]
        );
        // b missed one observation: forgotten, starts over.
        assert_eq!(
            counts(&obs(&mut store, &["a", "b", "c"])),
            vec![("a", 3), ("b", 1), ("c", 2)]
        );
        // Other providers and kinds are independent.
        store
            .write(|w| w.observe_leaks("p", LeakKind::FloatingIp, &ids(&["a"])))
            .unwrap();
        assert_eq!(counts(&obs(&mut store, &[])), vec![]);
        assert_eq!(store.read().leak_sightings().unwrap().len(), 1);
    }
}
