//! Faithful fakes of destination SaaS APIs, for tests only: each runs in-process and checks requests against the vendor's spec.

pub mod google;
pub mod hubspot;
pub mod linkedin;
pub mod meta;
pub mod openapi;
pub mod salesforce;
pub mod snapchat;
mod support;
pub mod tiktok;
