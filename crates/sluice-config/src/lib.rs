//! Sluice project files: `sluice.yaml` plus `models/*.yaml` and `syncs/*.yaml`, parsed with
//! environment interpolation and validated without touching any connection.
//!
//! Every error names the file, the key path and what was expected.

mod error;
mod interpolate;
mod project;

pub use error::{ConfigError, ConfigErrors};
pub use interpolate::interpolate;
pub use project::{
    AudienceInfo, Cardinality, ConnectorSpec, Model, ModelRelation, Project, StateLocation, SyncSpec, PROJECT_FILE,
};
