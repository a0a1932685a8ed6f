//! Pieces shared by HTTP destinations.

pub mod auth;
