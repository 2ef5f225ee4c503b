//! nodepool-rs: OpenStack Nodepool as a declarative GitOps reconciler.
//!
//! The binary (`src/main.rs` + `src/cli/`) is a thin layer over the operations in this library.
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod api;
pub mod builder;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod keyscan;
pub mod ops;
pub mod reconcile;
pub mod secret;
pub mod state;
pub mod tables;
pub mod watch;
