//! Destinations: one folder per tool, each behind a cargo feature, and the registry that maps
//! a project's `type:` to the tool's typed config and implementation.

use std::path::Path;

use sluice_config::{ConfigError, ConnectorSpec};
use sluice_core::Destination;

#[cfg(feature = "ads")]
pub mod ads;
#[cfg(any(feature = "linkedin", feature = "snapchat"))]
mod audience_sync;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "google")]
pub mod google;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "hubspot")]
pub mod hubspot;
#[cfg(feature = "linkedin")]
pub mod linkedin;
#[cfg(feature = "meta")]
pub mod meta;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "salesforce")]
pub mod salesforce;
#[cfg(feature = "snapchat")]
pub mod snapchat;
#[cfg(feature = "tiktok")]
pub mod tiktok;
#[cfg(feature = "webhook")]
pub mod webhook;

/// Destination types this build supports.
pub fn supported_types() -> Vec<&'static str> {
    vec![
        #[cfg(feature = "file")]
        "file",
        #[cfg(feature = "google")]
        "google_customer_match",
        #[cfg(feature = "hubspot")]
        "hubspot",
        #[cfg(feature = "meta")]
        "meta",
        #[cfg(feature = "linkedin")]
        "linkedin",
        #[cfg(feature = "postgres")]
        "postgres",
        #[cfg(feature = "salesforce")]
        "salesforce",
        #[cfg(feature = "tiktok")]
        "tiktok_audiences",
        #[cfg(feature = "snapchat")]
        "snapchat",
        #[cfg(feature = "webhook")]
        "webhook",
    ]
}

/// Builds a destination from its project entry. Pure: no connection is made.
pub fn build(spec: &ConnectorSpec, project_root: &Path) -> Result<Box<dyn Destination>, ConfigError> {
    build_with(spec, project_root, None)
}

/// Like [`build`], giving OAuth destinations a place to keep refreshed tokens between runs.
pub fn build_with(
    spec: &ConnectorSpec,
    project_root: &Path,
    credentials: Option<std::sync::Arc<dyn sluice_core::CredentialStore>>,
) -> Result<Box<dyn Destination>, ConfigError> {
    let _ = (project_root, &credentials);
    match spec.kind.as_str() {
        #[cfg(feature = "file")]
        "file" => {
            let config: file::FileConfig = spec.decode()?;
            Ok(Box::new(
                file::FileDestination::new(config, project_root).map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        #[cfg(feature = "webhook")]
        "webhook" => {
            let config: webhook::WebhookConfig = spec.decode()?;
            Ok(Box::new(webhook::WebhookDestination::new(config).map_err(|(key, message)| spec.error(key, message))?))
        }
        #[cfg(feature = "hubspot")]
        "hubspot" => {
            let config: hubspot::HubSpotConfig = spec.decode()?;
            Ok(Box::new(
                hubspot::HubSpotDestination::new(config, credentials)
                    .map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        #[cfg(feature = "meta")]
        "meta" => {
            let config: meta::MetaConfig = spec.decode()?;
            Ok(Box::new(meta::MetaDestination::new(config).map_err(|(key, message)| spec.error(key, message))?))
        }
        #[cfg(feature = "linkedin")]
        "linkedin" => {
            let config: linkedin::LinkedInConfig = spec.decode()?;
            Ok(Box::new(
                linkedin::LinkedInDestination::new(config, credentials)
                    .map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let config: postgres::PostgresDestinationConfig = spec.decode()?;
            Ok(Box::new(postgres::PostgresDestination::new(config).map_err(|(key, message)| spec.error(key, message))?))
        }
        #[cfg(feature = "salesforce")]
        "salesforce" => {
            let config: salesforce::SalesforceConfig = spec.decode()?;
            Ok(Box::new(
                salesforce::SalesforceDestination::new(config, credentials)
                    .map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        #[cfg(feature = "google")]
        "google_customer_match" => {
            let config: google::GoogleConfig = spec.decode()?;
            Ok(Box::new(
                google::GoogleDestination::new(config, credentials)
                    .map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        #[cfg(feature = "tiktok")]
        "tiktok_audiences" => {
            let config: tiktok::TikTokConfig = spec.decode()?;
            Ok(Box::new(tiktok::TikTokDestination::new(config).map_err(|(key, message)| spec.error(key, message))?))
        }
        #[cfg(feature = "snapchat")]
        "snapchat" => {
            let config: snapchat::SnapchatConfig = spec.decode()?;
            Ok(Box::new(
                snapchat::SnapchatDestination::new(config, credentials)
                    .map_err(|(key, message)| spec.error(key, message))?,
            ))
        }
        other => Err(spec.error(
            "type",
            format!("unknown destination type `{other}`: expected one of {}", supported_types().join(", ")),
        )),
    }
}
