//! Pieces shared by HTTP destinations.

pub mod auth;
pub mod exchange;
