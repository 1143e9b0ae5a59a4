//! Encryption at rest and keyed lookup hashes.
//!
//! Every secret column is AES-256-GCM encrypted with the row's key id; the additional data binds
//! each ciphertext to its row id and column, so a ciphertext copied elsewhere fails to decrypt.
//! Lookups by token value go through an HMAC-SHA256 of the value with a separate lookup key, so the
//! database never needs (or holds) the plaintext. Rotating the encryption key leaves the lookup key
//! alone, so hashes stay valid.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::Secret;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no encryption key with id `{0}` is configured")]
    UnknownKey(String),
    #[error("a stored secret failed to decrypt (wrong key or tampered row)")]
    Decrypt,
    #[error("{0}")]
    Config(String),
}

/// The keys this process holds: encryption keys by id, the active one, and the lookup (HMAC) key.
pub struct KeyRing {
    active: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
    lookup: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn decode_key(name: &str, b64: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let bytes = Zeroizing::new(B64.decode(b64.trim()).map_err(|_| {
        CryptoError::Config(format!(
            "{name}: not valid base64 (expected 32 random bytes)"
        ))
    })?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(CryptoError::Config(format!(
            "{name}: must decode to exactly 32 bytes, got {}",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    // 32 random bytes have about 30 distinct values; a key with fewer than 16 (all zeros, a
    // repeated pattern, a counter) was not drawn at random.
    if key.iter().collect::<std::collections::BTreeSet<_>>().len() < 16 {
        return Err(CryptoError::Config(format!(
            "{name}: not a random key (too few distinct bytes); make one with `token-broker keys generate`"
        )));
    }
    Ok(key)
}

/// An estimate of the bits of entropy in `bytes`: their count times the Shannon entropy of their
/// own frequencies. Good enough to tell a random secret from a repeated or patterned one.
pub fn estimated_entropy_bits(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let n = bytes.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

impl KeyRing {
    /// Builds a key ring from base64 keys. `active` must name one of `keys`.
    pub fn new(
        active: &str,
        keys: &BTreeMap<String, SecretString>,
        lookup_key: &SecretString,
    ) -> Result<Self, CryptoError> {
        let mut ciphers = BTreeMap::new();
        for (id, b64) in keys {
            let key = decode_key(&format!("crypto.keys.{id}"), b64.expose_secret())?;
            let cipher = Aes256Gcm::new_from_slice(key.as_slice())
                .map_err(|_| CryptoError::Config(format!("crypto.keys.{id}: bad key")))?;
            ciphers.insert(id.clone(), cipher);
        }
        if !ciphers.contains_key(active) {
            return Err(CryptoError::Config(format!(
                "crypto.active_key_id: `{active}` is not one of the configured crypto.keys"
            )));
        }
        let lookup = decode_key("crypto.lookup_key", lookup_key.expose_secret())?;
        Ok(Self {
            active: active.to_owned(),
            ciphers,
            lookup: SecretBox::new(Box::new(*lookup)),
        })
    }

    /// The key id new rows are encrypted with.
    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn has_key(&self, id: &str) -> bool {
        self.ciphers.contains_key(id)
    }

    /// Encrypts `secret` under the active key, bound to `row_id` and `column`.
    pub fn encrypt(&self, row_id: &str, column: &str, secret: &Secret) -> Vec<u8> {
        self.encrypt_with(&self.active, row_id, column, secret)
            .expect("the active key is always present")
    }

    pub fn encrypt_with(
        &self,
        key_id: &str,
        row_id: &str,
        column: &str,
        secret: &Secret,
    ) -> Result<Vec<u8>, CryptoError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = format!("{row_id}\0{column}");
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts what [`encrypt`](Self::encrypt) produced for the same row and column.
    pub fn decrypt(
        &self,
        key_id: &str,
        row_id: &str,
        column: &str,
        blob: &[u8],
    ) -> Result<Secret, CryptoError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = format!("{row_id}\0{column}");
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| CryptoError::Decrypt)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Decrypt)?;
        Ok(Secret::new(text))
    }

    /// The keyed hash stored beside a secret so rows can be found by the secret's value.
    pub fn lookup_hash(&self, secret: &Secret) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.lookup.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(secret.expose().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Generates 32 random bytes, base64-encoded: the format every key in the config takes.
pub fn generate_key() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(bytes.as_mut_slice());
    SecretString::from(B64.encode(bytes.as_slice()))
}

/// The local key file the embedded default creates on first run (mode 0600), holding the
/// encryption key, the lookup key and the HS256 secret for caller JWTs.
#[derive(Serialize, Deserialize)]
pub struct LocalKeyFile {
    pub active_key_id: String,
    pub keys: BTreeMap<String, String>,
    pub lookup_key: String,
    pub jwt_hs256_secret: String,
}

impl Drop for LocalKeyFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for v in self.keys.values_mut() {
            v.zeroize();
        }
        self.lookup_key.zeroize();
        self.jwt_hs256_secret.zeroize();
    }
}

impl LocalKeyFile {
    /// Reads the key file at `path`, creating it with fresh keys if it does not exist.
    /// Returns the file and whether it was just created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let file: Self = serde_json::from_str(&text).map_err(|e| {
                    CryptoError::Config(format!(
                        "crypto.key_file: {} is not a valid key file: {e}",
                        path.display()
                    ))
                })?;
                Ok((file, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = Self {
                    active_key_id: "local-1".into(),
                    keys: BTreeMap::from([(
                        "local-1".into(),
                        generate_key().expose_secret().to_owned(),
                    )]),
                    lookup_key: generate_key().expose_secret().to_owned(),
                    jwt_hs256_secret: generate_key().expose_secret().to_owned(),
                };
                file.write_new(path)?;
                Ok((file, true))
            }
            Err(e) => Err(CryptoError::Config(format!(
                "crypto.key_file: cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let err = |e: std::io::Error| {
            CryptoError::Config(format!(
                "crypto.key_file: cannot create {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path).map_err(err)?;
        let text = Zeroizing::new(serde_json::to_string_pretty(self).expect("serializable"));
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(())
    }
}

/// Absolute form of a path for log messages.
pub fn display_path(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        let keys = BTreeMap::from([("k1".to_string(), generate_key())]);
        KeyRing::new("k1", &keys, &generate_key()).unwrap()
    }

    #[test]
    fn round_trips_and_binds_to_row_and_column() {
        let ring = ring();
        let secret = Secret::new("1000.refresh");
        let blob = ring.encrypt("row1", "refresh_token", &secret);
        assert!(!blob.windows(7).any(|w| w == b"refresh"));
        assert_eq!(
            ring.decrypt("k1", "row1", "refresh_token", &blob)
                .unwrap()
                .expose(),
            "1000.refresh"
        );
        assert!(ring.decrypt("k1", "row2", "refresh_token", &blob).is_err());
        assert!(ring.decrypt("k1", "row1", "access_token", &blob).is_err());
        assert!(matches!(
            ring.decrypt("k9", "row1", "refresh_token", &blob),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn lookup_hash_is_keyed_and_stable() {
        let ring = ring();
        let s = Secret::new("abc");
        assert_eq!(ring.lookup_hash(&s), ring.lookup_hash(&s));
        assert_ne!(ring.lookup_hash(&s), self::ring().lookup_hash(&s));
        assert_eq!(ring.lookup_hash(&s).len(), 64);
    }

    #[test]
    fn bad_keys_name_the_key() {
        let keys = BTreeMap::from([("k1".to_string(), SecretString::from("short"))]);
        let err = KeyRing::new("k1", &keys, &generate_key()).unwrap_err();
        assert!(err.to_string().contains("crypto.keys.k1"), "{err}");
        let keys = BTreeMap::from([("k1".to_string(), generate_key())]);
        let err = KeyRing::new("k2", &keys, &generate_key()).unwrap_err();
        assert!(err.to_string().contains("crypto.active_key_id"), "{err}");
    }

    #[test]
    fn key_file_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (_, created) = LocalKeyFile::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, created) = LocalKeyFile::load_or_create(&path).unwrap();
        assert!(!created);
    }
}
