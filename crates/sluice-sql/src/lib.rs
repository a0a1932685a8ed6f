//! Audiences without SQL: a condition language (and, or, not; properties, related models,
//! events and sequences, other audiences), splits and priority lists, compiled to one query
//! per warehouse dialect. Pure: no I/O.

pub mod ast;
pub mod compile;
pub mod dialect;
pub mod parse;

pub use ast::{Audience, AudienceBody, Condition};
pub use compile::{ColumnRef, Compiled, Compiler, Groups, ModelSchema, Relation, Schema};
pub use dialect::Dialect;
pub use parse::parse_audience;

/// A problem in an audience, at a key path inside its entry (`conditions.and[1].count`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SqlError {
    pub path: String,
    pub message: String,
}

impl SqlError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> SqlError {
        SqlError { path: path.into(), message: message.into() }
    }
}

/// The split bucket of a key, in 0..10000: the first 32 bits of MD5(`salt:key`), big-endian,
/// modulo 10,000. Postgres computes the same in SQL; Sluice's SQLite source registers this
/// function as `sluice_split_bucket(salt, key)`.
pub fn split_bucket(salt: &str, key: &str) -> i64 {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    i64::from(first % 10_000)
}
