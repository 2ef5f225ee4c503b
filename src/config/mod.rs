//! The desired state: `nodepool.yaml` (+ secure file, + `clouds.yaml`) loaded, schema-checked and validated.

pub mod credentials;
