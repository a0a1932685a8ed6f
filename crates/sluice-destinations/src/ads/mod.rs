//! Shared layer of the ad-platform destinations (Meta, Google, TikTok, LinkedIn, Snapchat):
//! which identifiers each platform matches on, each platform's documented normalisation, SHA-256,
//! and audience members as sent.
//!
//! Only normalised, hashed values leave the machine, except where a platform documents that it
//! takes a value unhashed (mobile ad ids for Meta and LinkedIn, Google's postal and region
//! codes): see [`identifiers::is_hashed`] and the table in `docs/connectors.md`.

pub mod identifiers;
pub mod members;

pub use identifiers::{Identifier, NormalizeOptions, Platform};
