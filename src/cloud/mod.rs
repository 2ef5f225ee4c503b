//! The OpenStack client: Keystone v3, Nova, Glance v2 and Neutron over real HTTP, with typed errors.
//!
//! One [`OpenStackClient`] per provider. It authenticates lazily, caches the token and renews it
//! before expiry (and once on a 401), spaces calls by the provider's `rate`, gives every request
//! a timeout, retries idempotent calls with capped exponential backoff and jitter, and turns each
//! service's error format into a [`CloudError`] whose variant tells the caller what to do.
//! It speaks the wire formats directly with `reqwest` (see ARCHITECTURE.md for why).

/// A status a service spells as text: the known ones as variants, any other kept verbatim.
/// One list of (variant, spelling) gives parsing (`From<&str>`), `as_str` and serialisation.
macro_rules! wire_status {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
            /// Any other status, verbatim.
            Other(String),
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl $name {
            /// The service's own spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

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
