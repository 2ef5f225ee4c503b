//! Operations: what each command does, as library calls (the CLI and the daemon are thin on top).
//!
//! An operation opens a [`Workspace`] (the loaded config, the state store, one cloud client
//! per provider) and calls into `reconcile`, `state` and `cloud`. Nothing here prints:
//! results are returned as data for a renderer.

pub mod apply;
pub mod backup;
pub mod history;
pub mod images;
pub mod inventory;
pub mod nodes;
pub mod plan;

use crate::cloud::{ClientOptions, CloudError, OpenStackClient};
use crate::config::clouds::{CloudsFile, CredentialsError, credentials_for};
use crate::config::{self, Config, ConfigError, LoadOptions, Loaded};
use crate::state::{StateError, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where things are: the config, the secure file, the clouds file and the database.
#[derive(Clone, Debug)]
pub struct Paths {
    /// A `nodepool.yaml` or a config repo directory.
    pub config: PathBuf,
    pub secure: Option<PathBuf>,
    /// A `clouds.yaml`; `None`: found as openstacksdk does.
    pub clouds: Option<PathBuf>,
    /// The SQLite database.
    pub state: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("cannot create {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// The loaded config, its revision, the state store and the clouds' clients.
pub struct Workspace {
    pub paths: Paths,
    pub loaded: Loaded,
    /// e.g. `file@1a2b3c4d5e6f` or `main@1a2b3c4`.
    pub revision: String,
    pub store: Store,
    pub clients: BTreeMap<String, OpenStackClient>,
    /// Providers whose credentials could not be resolved, with why (they are reported as
    /// unavailable, never silently skipped).
    pub unresolved: BTreeMap<String, String>,
}

/// Client tuning from a provider's config: its `rate` and `image-upload-timeout`.
pub fn client_options(p: &crate::config::model::OpenStackProvider) -> ClientOptions {
    let mut o = ClientOptions::default().with_rate_secs(p.rate);
    o.upload_timeout = Duration::from_secs(p.image_upload_timeout);
    o
}

impl Workspace {
    /// Load and validate the config (an invalid config stops here, before anything is
    /// touched), open the database and prepare a client per provider.
    pub fn open(paths: Paths) -> Result<Workspace, OpError> {
        let loaded =
            config::load(&LoadOptions::new(&paths.config).with_secure(paths.secure.clone()))?;
        let revision = revision_of(&loaded);
        if let Some(dir) = paths.state.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let store = Store::open(&paths.state)?;
        let clouds = match &paths.clouds {
            Some(p) => Some(CloudsFile::load(p)?),
            None => CloudsFile::discover()?,
        };
        let (clients, unresolved) = clients_for(&loaded.config, clouds.as_ref());
        Ok(Workspace {
            paths,
            loaded,
            revision,
            store,
            clients,
            unresolved,
        })
    }

    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// Where builds find elements (relative to the config repo) and put images and logs
    /// (relative to the database's directory unless the config gives absolute paths).
    pub fn build_dirs(&self) -> crate::builder::BuildDirs {
        let repo = self
            .loaded
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let data = self
            .paths
            .state
            .parent()
            .unwrap_or(std::path::Path::new("."));
        crate::builder::BuildDirs::from_config(self.config(), repo, data)
    }
}

/// One client per provider whose credentials resolve; the others with the reason.
pub fn clients_for(
    config: &Config,
    clouds: Option<&CloudsFile>,
) -> (BTreeMap<String, OpenStackClient>, BTreeMap<String, String>) {
    let mut clients = BTreeMap::new();
    let mut unresolved = BTreeMap::new();
    for p in &config.providers {
        let made = credentials_for(p, clouds)
            .map_err(|e| e.to_string())
            .and_then(|creds| {
                OpenStackClient::new(creds, client_options(p)).map_err(|e| e.to_string())
            });
        match made {
            Ok(c) => {
                clients.insert(p.name.clone(), c);
            }
            Err(e) => {
                unresolved.insert(p.name.clone(), e);
            }
        }
    }
    (clients, unresolved)
}

/// The revision of a loaded config: its git commit when the file is in a repository, else
/// a hash of its text.
pub fn revision_of(loaded: &Loaded) -> String {
    history::revision(&loaded.path, &loaded.sha256)
}
