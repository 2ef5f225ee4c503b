//! The OpenStack client: Keystone v3, Nova, Glance v2 and Neutron over real HTTP, with typed errors.
//!
//! One [`OpenStackClient`] per provider. It authenticates lazily, caches the token and renews it
//! before expiry (and once on a 401), spaces calls by the provider's `rate`, gives every request
//! a timeout, retries idempotent calls with capped exponential backoff and jitter, and turns each
//! service's error format into a [`CloudError`] whose variant tells the caller what to do.
//! It speaks the wire formats directly with `reqwest` (see ARCHITECTURE.md for why).

mod auth;
mod client;
pub mod compute;
pub mod doctor;
pub mod error;
pub mod image;
pub mod network;

pub use client::{
    ApiCall, ApiCallCounter, CallStatus, ClientOptions, DEFAULT_COMPUTE_MICROVERSION,
    OpenStackClient, TokenInfo, operation_name,
};
pub use compute::{
    AvailabilityZone, BootVolume, CreateServer, Flavor, Limits, Quota, Server, ServerAddress,
    ServerFault, ServerFlavor, ServerNetworks, ServerQuery, ServerStatus,
};
pub use error::{CloudError, Operation, Service};
pub use image::{CreateImage, Image, ImageQuery, ImageStatus, ProgressFn, UploadProgress};
pub use network::{FixedIp, FloatingIp, FloatingIpQuery, Network, Port, PortQuery};
