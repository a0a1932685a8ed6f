//! Encryption of credentials kept in the state store (refreshed OAuth tokens), so a copy of
//! the state database alone does not give access to anyone's tools.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::CredentialStore;

use crate::{StateError, StateStore};

/// Environment variable holding the 32-byte key as 64 hex digits. Every worker sharing a
/// Postgres state store needs the same key.
pub const KEY_VARIABLE: &str = "SLUICE_SECRET_KEY";

const NONCE_BYTES: usize = 12;

/// Seals and opens credentials with ChaCha20-Poly1305.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// A box for a raw 32-byte key.
    pub fn from_key(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(key)) }
    }

    /// The key from `SLUICE_SECRET_KEY`, or else from `key_file`, which is created (readable
    /// by its owner only) with a random key the first time.
    pub fn load(key_file: &Path) -> Result<SecretBox, StateError> {
        let problem = |cause: String| StateError::Open { target: "the credential key".into(), cause };
        if let Ok(text) = std::env::var(KEY_VARIABLE) {
            let key = parse_hex_key(text.trim())
                .ok_or_else(|| problem(format!("{KEY_VARIABLE} must be 64 hex digits (32 bytes)")))?;
            return Ok(SecretBox::from_key(&key));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => parse_hex_key(text.trim())
                .map(|key| SecretBox::from_key(&key))
                .ok_or_else(|| problem(format!("{} must hold 64 hex digits (32 bytes)", key_file.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = ChaCha20Poly1305::generate_key(&mut OsRng).into();
                write_key_file(key_file, &key)
                    .map_err(|e| problem(format!("cannot create {}: {e}", key_file.display())))?;
                Ok(SecretBox::from_key(&key))
            }
            Err(error) => Err(problem(format!("cannot read {}: {error}", key_file.display()))),
        }
    }

    /// Encrypts `plaintext`, binding it to `name` so a sealed value cannot be moved to
    /// another name. The result is nonce ‖ ciphertext.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, StateError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: name.as_bytes() }).map_err(|_| {
            StateError::Query { target: "the credential key".into(), cause: "encryption failed".into() }
        })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`SecretBox::seal`] produced for the same name.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StateError> {
        let failed = || StateError::Query {
            target: "the credential key".into(),
            cause: format!(
                "cannot decrypt the stored credential `{name}`: it was sealed with another key \
                 (set {KEY_VARIABLE} to the key used before, or reset the credential)"
            ),
        };
        if sealed.len() < NONCE_BYTES {
            return Err(failed());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: name.as_bytes() })
            .map_err(|_| failed())
    }
}

/// Credentials sealed with a [`SecretBox`] and kept in a state store.
pub struct SealedCredentials {
    store: Arc<dyn StateStore>,
    secrets: SecretBox,
}

impl SealedCredentials {
    /// Credentials in `store`, sealed with `secrets`.
    pub fn new(store: Arc<dyn StateStore>, secrets: SecretBox) -> SealedCredentials {
        SealedCredentials { store, secrets }
    }
}

#[async_trait]
impl CredentialStore for SealedCredentials {
    async fn load(&self, name: &str) -> Result<Option<String>, String> {
        let Some(sealed) = self.store.load_credential(name).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let plain = self.secrets.open(name, &sealed).map_err(|e| e.to_string())?;
        String::from_utf8(plain).map(Some).map_err(|_| format!("the stored credential `{name}` is not text"))
    }

    async fn save(&self, name: &str, value: &str) -> Result<(), String> {
        let sealed = self.secrets.seal(name, value.as_bytes()).map_err(|e| e.to_string())?;
        self.store.save_credential(name, &sealed).await.map_err(|e| e.to_string())
    }
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

fn write_key_file(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_name() {
        let secrets = SecretBox::from_key(&[7; 32]);
        let sealed = secrets.seal("hubspot/token", b"pat-na1-secret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the plaintext does not appear");
        assert_eq!(secrets.open("hubspot/token", &sealed).unwrap(), b"pat-na1-secret");
        assert!(secrets.open("salesforce/token", &sealed).is_err(), "bound to its name");
        let other = SecretBox::from_key(&[8; 32]);
        let error = other.open("hubspot/token", &sealed).unwrap_err().to_string();
        assert!(error.contains("sealed with another key"), "{error}");
        assert!(secrets.open("hubspot/token", b"short").is_err());
    }

    #[tokio::test]
    async fn sealed_credentials_round_trip_through_a_state_store_without_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::sqlite::SqliteStateStore::open(&dir.path().join("s.db")).unwrap());
        let credentials = SealedCredentials::new(store.clone(), SecretBox::from_key(&[9; 32]));
        assert_eq!(credentials.load("x/oauth").await.unwrap(), None);
        credentials.save("x/oauth", r#"{"access_token":"very-secret"}"#).await.unwrap();
        assert_eq!(credentials.load("x/oauth").await.unwrap().as_deref(), Some(r#"{"access_token":"very-secret"}"#));
        let raw = store.load_credential("x/oauth").await.unwrap().unwrap();
        assert!(!raw.windows(11).any(|w| w == b"very-secret"), "stored sealed");
        let wrong_key = SealedCredentials::new(store, SecretBox::from_key(&[1; 32]));
        assert!(wrong_key.load("x/oauth").await.unwrap_err().contains("sealed with another key"));
    }

    #[test]
    fn a_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".sluice/secret.key");
        let first = SecretBox::load(&path).unwrap();
        let sealed = first.seal("n", b"v").unwrap();
        let second = SecretBox::load(&path).unwrap();
        assert_eq!(second.open("n", &sealed).unwrap(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(SecretBox::load(&path).err().unwrap().to_string().contains("64 hex digits"));
    }
}
