//! cloudsim: an in-memory OpenStack (Keystone v3, Nova v2.1, Glance v2, Neutron v2.0) over real HTTP.
//!
//! One listener serves every service under a path prefix, like devstack does:
//! `/identity` (Keystone), `/compute/v2.1` (Nova), `/image` (Glance), `/network` (Neutron),
//! plus the token-less admin API under `/_sim`. See README.md for the config format.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudsim::SimError> {
//! let sim = cloudsim::Simulator::start(cloudsim::SimConfig::default()).await?;
//! println!("auth_url = {}", sim.auth_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

// Helpers return ready-made error `Response`s as `Err` to short-circuit handlers; they are
// built once per failed request, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod config;
pub mod counters;
pub mod faults;
pub mod glance;
pub mod keystone;
pub mod neutron;
pub mod nova;
pub mod state;

mod server;

#[cfg(test)]
mod handler_tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use config::{ConfigError, SimConfig};
pub use counters::{CallCount, CounterSnapshot};
pub use faults::{FaultAction, FaultRule};
pub use server::{SimError, SimHandle, Simulator};

use counters::Counters;
use faults::FaultSet;
use state::{Identity, Store};

/// Shared state of a running simulator.
pub struct Sim {
    pub config: SimConfig,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    pub identity: RwLock<Identity>,
    pub store: Mutex<Store>,
    pub faults: Mutex<FaultSet>,
    pub counters: Counters,
    /// Highest accepted Nova microversion (major, minor).
    pub max_microversion: (u32, u32),
}

impl Sim {
    fn new(config: SimConfig, addr: SocketAddr) -> Result<Sim, SimError> {
        config.validate()?;
        let identity = Identity::from_config(&config);
        let owner = identity
            .projects
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let store = Store::from_config(&config, &owner);
        let mut faults = FaultSet::default();
        for rule in &config.faults {
            faults
                .add(rule.clone())
                .map_err(|e| SimError::Config(ConfigError::Invalid(e.to_string())))?;
        }
        let max_microversion = nova::parse_microversion(&config.max_microversion)
            .ok_or_else(|| ConfigError::Invalid("bad max_microversion".into()))?;
        Ok(Sim {
            base_url: format!("http://{addr}"),
            identity: RwLock::new(identity),
            store: Mutex::new(store),
            faults: Mutex::new(faults),
            counters: Counters::default(),
            max_microversion,
            config,
        })
    }

    /// Locks the resource store and applies status changes that are due.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        let mut s = self.store.lock().unwrap_or_else(|p| p.into_inner());
        s.advance(chrono::Utc::now());
        s
    }

    pub fn identity(&self) -> std::sync::RwLockReadGuard<'_, Identity> {
        self.identity.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn identity_mut(&self) -> std::sync::RwLockWriteGuard<'_, Identity> {
        self.identity.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fault_set(&self) -> MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Service endpoint URLs as published in the catalog.
    pub fn identity_url(&self) -> String {
        format!("{}/identity/v3", self.base_url)
    }
    pub fn compute_url(&self) -> String {
        format!("{}/compute/v2.1", self.base_url)
    }
    pub fn image_url(&self) -> String {
        format!("{}/image", self.base_url)
    }
    pub fn network_url(&self) -> String {
        format!("{}/network", self.base_url)
    }

    /// Restores the state built from the config (servers, images, ports, tokens, faults).
    pub fn reset_state(&self) {
        let identity = Identity::from_config(&self.config);
        let owner = identity
            .projects
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        *self.identity_mut() = identity;
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) =
            Store::from_config(&self.config, &owner);
        let mut faults = self.fault_set();
        faults.clear();
        for rule in &self.config.faults {
            // Validated at start.
            let _ = faults.add(rule.clone());
        }
    }
}

pub type SharedSim = Arc<Sim>;
