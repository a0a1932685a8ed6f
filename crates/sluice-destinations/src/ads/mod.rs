//! Shared layer of the ad-platform destinations (Meta, Google, TikTok, LinkedIn, Snapchat):
//! which identifiers each platform matches on, each platform's documented normalisation, SHA-256,
//! and audience members as sent.
//!
//! Only normalised, hashed values leave the machine, except where a platform documents that it
//! takes a value unhashed (mobile ad ids for Meta and LinkedIn, Google's postal and region
//! codes): see [`identifiers::is_hashed`] and the table in `docs/connectors.md`.

#[cfg(any(feature = "google", feature = "tiktok"))]
pub(crate) mod delivery;
pub mod identifiers;
pub mod members;

pub use identifiers::{Identifier, NormalizeOptions, Platform};

/// The `Destination` methods that Google and TikTok answer alike from their `identity`,
/// `batch_size`, `limits` and `account` fields: each sync names its audience in `object:`, and
/// each applied record keeps the member sent as its destination id. Use inside the trait impl.
#[cfg(any(feature = "google", feature = "tiktok"))]
macro_rules! audience_destination_settings {
    () => {
        fn identity(&self) -> String {
            self.identity.clone()
        }

        fn batch_size(&self) -> usize {
            self.batch_size
        }

        fn delivery_limits(&self) -> DeliveryLimits {
            self.limits.clone()
        }

        fn wants_destination_ids(&self) -> bool {
            true
        }

        fn accepts_object(&self) -> bool {
            true
        }

        fn account_key(&self) -> String {
            self.account.clone()
        }
    };
}
#[cfg(any(feature = "google", feature = "tiktok"))]
pub(crate) use audience_destination_settings;
