//! Observe → plan → apply: how the desired config and the observed world become actions.
//!
//! `world` is the planner's input as plain data; `plan` is the pure function; `render` formats
//! plans for people (Terraform-style text) and programs (versioned JSON).

pub mod apply;
pub mod launch;
pub mod observe;
pub mod plan;
pub mod render;
pub mod stale;
pub mod world;

pub use plan::{Action, ActionKind, Change, Plan, Summary, plan};
pub use world::World;
