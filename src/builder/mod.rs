//! The image builder's building blocks: run a diskimage build ([`dib`]) and upload a built file to a provider ([`upload`](mod@upload)).
//!
//! These functions do one build or one upload each and report what happened; deciding *when*
//! to build, upload, rotate or delete is the planner's job (src/reconcile/), which records the
//! outcome in the state store. Nothing here touches the database.
//!
//! - [`dib::build`] runs the diskimage's `dib-cmd` (upstream's `disk-image-create`, or the
//!   project's rootless `tools/nodepool-dib`) with nodepool's command-line contract, logs its
//!   output (secure env-var values redacted) to a per-build log, enforces `build-timeout` by
//!   killing the whole process group, and returns the produced files with their checksums.
//! - [`upload::upload`] creates the Glance image with nodepool's name and properties, streams
//!   the file, waits until it is `active` and runs the provider's `post-upload-hook`.

pub mod dib;
pub mod upload;

pub use dib::{BuildDirs, BuildError, BuildOutput, BuildRequest, BuiltFile, build};
pub use upload::{
    Cleanup, FailureReason, UploadError, UploadFailure, UploadRequest, Uploaded, format_image_name,
    glance_formats, match_image_name, upload,
};
