//! Pieces shared by HTTP destinations.

pub mod auth;
pub mod exchange;
#[cfg(any(feature = "linkedin", feature = "snapchat"))]
pub(crate) mod settings;
