//! Delivery pacing: adaptive request concurrency and per-account rate budgets.

pub mod concurrency;
pub mod rate_limit;
