//! `nodepool backup`: a consistent copy of the database, taken while the daemon runs.
//!
//! The database is all the state there is (no ZooKeeper), so this is the disaster-recovery
//! step upstream's `export-image-data` was: restore by stopping the daemon and putting the copy
//! in the database's place. It needs no valid config: a broken config is no reason to refuse
//! a backup.

use super::OpError;
use crate::state::BackupSummary;
use std::path::Path;

/// Copy the database at `state` to `dest` (see [`crate::state::backup`]); refused if there is
/// no database at `state`.
pub fn backup(state: &Path, dest: &Path) -> Result<BackupSummary, OpError> {
    if !state.exists() {
        return Err(OpError::Refused(format!(
            "no database at {} (give --state or NODEPOOL_STATE)",
            state.display()
        )));
    }
    Ok(crate::state::backup(state, dest)?)
}
