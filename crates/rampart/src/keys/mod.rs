//! Token signing keys: generation, the keys file, rotation and the public JWK set.
//!
//! Defends against key leakage and painful rotation: the keys file is written with mode 0600
//! and never overwritten in place (a new file is created, or replaced atomically by rename), the
//! private half never leaves this module except to sign, `Debug` prints only key ids, and
//! rotation keeps retired keys for verification until every token they signed has expired, so
//! rotating logs nobody out.
//!
//! The file is a JWK set (RFC 7517) whose keys carry their private part (`d`), plus
//! `created_at` / `retired_at`, so standard tooling can read it. The first key signs.
//!
//! HS256 deployments use a shared secret instead of a keys file: [`generate_hs256_secret`]
//! makes one, and [`strength::judge_hs256_secret`] judges an operator's own.

mod byte_patterns;
pub mod strength;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Retired keys are kept this long: the longest access-token lifetime production allows plus
/// the verification leeway, so every token a retired key signed has expired when it goes.
pub const RETIRED_KEY_RETENTION: Duration = Duration::from_secs(60 * 60 + 60);

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read keys file {path}: {kind}")]
    Read {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("cannot write keys file {path}: {kind}")]
    Write {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("keys file {path} already exists; refusing to overwrite it")]
    Exists { path: String },
    #[error("keys file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("the system random number generator failed")]
    Random,
}

/// One signing key.
pub struct Key {
    kid: String,
    signing: SigningKey,
    created_at: OffsetDateTime,
    retired_at: Option<OffsetDateTime>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &"EdDSA")
            .field("retired", &self.retired_at.is_some())
            .finish_non_exhaustive()
    }
}

impl Key {
    fn generate(now: OffsetDateTime) -> Result<Self, KeysError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| KeysError::Random)?;
        let mut kid = [0u8; 12];
        getrandom::fill(&mut kid).map_err(|_| KeysError::Random)?;
        let signing = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(kid),
            signing,
            created_at: now,
            retired_at: None,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The Ed25519 signing key (private).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }

    /// When this key stopped signing, if it has.
    pub fn retired_at(&self) -> Option<OffsetDateTime> {
        self.retired_at
    }

    /// A retired key verifies only within [`RETIRED_KEY_RETENTION`] of its retirement.
    fn still_verifies(&self, now: OffsetDateTime) -> bool {
        self.retired_at
            .is_none_or(|at| now - at < RETIRED_KEY_RETENTION)
    }
}

/// The signing key and any retired keys still valid for verification, and the secret the
/// audit chain is keyed with.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    /// 32 random bytes that outlive every rotation: rows keyed with it years ago must still
    /// verify. `None` only in a file written before audit keys existed.
    audit_key: Option<secrecy::SecretSlice<u8>>,
}

fn new_audit_key() -> Result<secrecy::SecretSlice<u8>, KeysError> {
    let mut bytes = vec![0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| KeysError::Random)?;
    Ok(secrecy::SecretSlice::from(bytes))
}

/// On-disk form of one key (an OKP JWK with its private part).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kty: String,
    crv: String,
    alg: String,
    #[serde(rename = "use")]
    use_: String,
    kid: String,
    x: String,
    d: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    retired_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSet {
    keys: Vec<StoredKey>,
    /// Base64url of the audit chain's secret (not a JWK: it never signs a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_key: Option<String>,
}

impl KeySet {
    /// A fresh set with one new signing key and an audit key.
    pub fn generate() -> Result<Self, KeysError> {
        Ok(Self {
            keys: vec![Key::generate(OffsetDateTime::now_utc())?],
            audit_key: Some(new_audit_key()?),
        })
    }

    /// The secret the audit chain is keyed with; `None` in a file that predates it (a
    /// rotation adds one).
    pub fn audit_key(&self) -> Option<&[u8]> {
        self.audit_key
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret)
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &Key {
        // `parse` guarantees at least one key and that the first is not retired.
        &self.keys[0]
    }

    /// Every key valid for verification, current first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Adds a new signing key; the previous one is retired (still verifies) and keys retired
    /// longer than [`RETIRED_KEY_RETENTION`] ago are dropped. The audit key is kept, or added
    /// to a file that has none.
    pub fn rotate(&mut self, now: OffsetDateTime) -> Result<(), KeysError> {
        if self.audit_key.is_none() {
            self.audit_key = Some(new_audit_key()?);
        }
        let new = Key::generate(now)?;
        for key in &mut self.keys {
            key.retired_at.get_or_insert(now);
        }
        self.keys.retain(|k| {
            k.retired_at
                .is_none_or(|at| now - at < RETIRED_KEY_RETENTION)
        });
        self.keys.insert(0, new);
        Ok(())
    }

    /// Reads and validates a keys file. Retired keys past their retention are left out, so a
    /// leaked old key stops verifying even if nobody rotates again.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeysError::Read {
            path: path.display().to_string(),
            kind: e.kind(),
        })?;
        Self::parse(&text).map_err(|reason| KeysError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let stored: StoredSet = serde_json::from_str(text)
            .map_err(|e| format!("not a keys file (line {}, column {})", e.line(), e.column()))?;
        let mut keys = Vec::with_capacity(stored.keys.len());
        for k in stored.keys {
            if (
                k.kty.as_str(),
                k.crv.as_str(),
                k.alg.as_str(),
                k.use_.as_str(),
            ) != ("OKP", "Ed25519", "EdDSA", "sig")
            {
                return Err(format!("key {} is not an Ed25519 signing key", k.kid));
            }
            let seed: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&k.d)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| format!("key {} has a malformed private part", k.kid))?;
            let signing = SigningKey::from_bytes(&seed);
            if URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()) != k.x {
                return Err(format!(
                    "key {}: public part does not match the private part",
                    k.kid
                ));
            }
            if k.kid.is_empty() || keys.iter().any(|other: &Key| other.kid == k.kid) {
                return Err(format!("key id `{}` is empty or repeated", k.kid));
            }
            keys.push(Key {
                kid: k.kid,
                signing,
                created_at: k.created_at,
                retired_at: k.retired_at,
            });
        }
        let audit_key = match stored.audit_key {
            None => None,
            Some(encoded) => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(encoded.as_bytes())
                    .ok()
                    .filter(|bytes| bytes.len() == 32)
                    .ok_or("its audit_key is not 32 bytes of base64url")?;
                Some(secrecy::SecretSlice::from(bytes))
            }
        };
        match keys.first() {
            None => Err("it holds no keys".into()),
            Some(first) if first.is_retired() => {
                Err("its first key (the signing key) is retired".into())
            }
            Some(_) => {
                let now = OffsetDateTime::now_utc();
                keys.retain(|k| k.still_verifies(now));
                Ok(Self { keys, audit_key })
            }
        }
    }

    fn to_json(&self) -> String {
        let stored = StoredSet {
            keys: self
                .keys
                .iter()
                .map(|k| StoredKey {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    alg: "EdDSA".into(),
                    use_: "sig".into(),
                    kid: k.kid.clone(),
                    x: URL_SAFE_NO_PAD.encode(k.public_key()),
                    d: URL_SAFE_NO_PAD.encode(k.signing.to_bytes()),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                })
                .collect(),
            audit_key: self.audit_key().map(|key| URL_SAFE_NO_PAD.encode(key)),
        };
        serde_json::to_string_pretty(&stored).unwrap_or_default()
    }

    /// Writes a new keys file (mode 0600); refuses to overwrite an existing one.
    pub fn write_new(&self, path: &Path) -> Result<(), KeysError> {
        if path.exists() {
            return Err(KeysError::Exists {
                path: path.display().to_string(),
            });
        }
        write_private(path, self.to_json().as_bytes())
    }

    /// Replaces a keys file atomically (write a private temporary file, then rename). The
    /// temporary file is created exclusively (never through an existing file or symlink).
    pub fn replace(&self, path: &Path) -> Result<(), KeysError> {
        let tmp = path.with_extension("json.tmp");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(KeysError::Write {
                    path: tmp.display().to_string(),
                    kind: e.kind(),
                })
            }
        }
        write_private(&tmp, self.to_json().as_bytes())?;
        std::fs::rename(&tmp, path).map_err(|e| KeysError::Write {
            path: path.display().to_string(),
            kind: e.kind(),
        })
    }

    /// Loads the development keys file, creating it (and its folder, mode 0700) on first use,
    /// and adding an audit key to one written before audit keys existed.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeysError> {
        if path.exists() {
            let mut set = Self::load(path)?;
            if set.audit_key.is_none() {
                set.audit_key = Some(new_audit_key()?);
                set.replace(path)?;
            }
            return Ok(set);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| KeysError::Write {
                path: dir.display().to_string(),
                kind: e.kind(),
            })?;
        }
        let set = Self::generate()?;
        set.write_new(path)?;
        Ok(set)
    }

    /// The public JWK set for `/.well-known/jwks.json`: public parts only.
    pub fn public_jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(k.public_key()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Random bytes in a secret made by [`generate_hs256_secret`]: twice what production
/// requires ([`strength::MIN_SECRET_BYTES`]).
pub const HS256_SECRET_BYTES: usize = 64;

/// A new HS256 secret: [`HS256_SECRET_BYTES`] from the system's CSPRNG, base64url.
pub fn generate_hs256_secret() -> Result<secrecy::SecretString, KeysError> {
    let mut bytes = [0u8; HS256_SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| KeysError::Random)?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    bytes.fill(0);
    Ok(secrecy::SecretString::from(secret))
}

/// Writes `secret` to a new file (mode 0600) for `RAMPART_JWT_SECRET_FILE`; refuses to
/// overwrite.
pub fn write_secret_file(path: &Path, secret: &secrecy::SecretString) -> Result<(), KeysError> {
    use secrecy::ExposeSecret as _;
    if path.exists() {
        return Err(KeysError::Exists {
            path: path.display().to_string(),
        });
    }
    write_private(path, secret.expose_secret().as_bytes())
}

/// Creates a directory (and parents) readable only by the owner.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeysError> {
    let err = |e: std::io::Error| KeysError::Write {
        path: path.display().to_string(),
        kind: e.kind(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    // Always a fresh file (O_EXCL): never through an existing file or a planted symlink.
    options.create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sub/keys.json");
        let set = KeySet::load_or_generate(&path).unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode() & 0o777);
            assert_eq!(mode, 0o600);
        }
        let again = KeySet::load_or_generate(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.current().kid(), set.current().kid());
        assert_eq!(again.current().public_key(), set.current().public_key());
        assert!(matches!(
            set.write_new(&path),
            Err(KeysError::Exists { .. })
        ));
    }

    #[test]
    fn jwks_and_debug_hold_no_private_part() {
        let set = KeySet::generate().unwrap_or_else(|e| panic!("{e}"));
        let private = URL_SAFE_NO_PAD.encode(set.current().signing_key().to_bytes());
        let jwks = set.public_jwks().to_string();
        assert!(!jwks.contains(&private) && !jwks.contains("\"d\""));
        assert!(!format!("{set:?}").contains(&private));
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_tokens_expire() {
        let mut set = KeySet::generate().unwrap_or_else(|e| panic!("{e}"));
        let first = set.current().kid().to_owned();
        let t0 = OffsetDateTime::now_utc();
        set.rotate(t0).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(set.current().kid(), first);
        assert!(set.find(&first).is_some_and(Key::is_retired));
        set.rotate(t0 + RETIRED_KEY_RETENTION + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(set.find(&first).is_none());
        assert_eq!(set.keys().len(), 2);
    }

    #[test]
    fn retired_keys_past_retention_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut set = KeySet::generate().unwrap();
        let old = set.current().kid().to_owned();
        let long_ago = OffsetDateTime::now_utc() - RETIRED_KEY_RETENTION - Duration::from_secs(60);
        set.rotate(long_ago).unwrap();
        set.write_new(&path).unwrap();
        let loaded = KeySet::load(&path).unwrap();
        assert!(
            loaded.find(&old).is_none(),
            "a key retired past its retention must not verify"
        );
        assert_eq!(loaded.keys().len(), 1);

        let mut recent = KeySet::generate().unwrap();
        let kept = recent.current().kid().to_owned();
        recent.rotate(OffsetDateTime::now_utc()).unwrap();
        recent.replace(&path).unwrap();
        assert!(KeySet::load(&path).unwrap().find(&kept).is_some());
    }

    #[test]
    fn the_audit_key_outlives_rotations_and_is_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut set = KeySet::generate().unwrap();
        let audit = set.audit_key().map(<[u8]>::to_vec).unwrap();
        assert_eq!(audit.len(), 32);
        let t0 = OffsetDateTime::now_utc();
        set.rotate(t0).unwrap();
        set.rotate(t0 + RETIRED_KEY_RETENTION + Duration::from_secs(1))
            .unwrap();
        set.write_new(&path).unwrap();
        let loaded = KeySet::load(&path).unwrap();
        assert_eq!(loaded.audit_key(), Some(audit.as_slice()));
        let public = loaded.public_jwks().to_string();
        assert!(!public.contains(&URL_SAFE_NO_PAD.encode(&audit)));
        assert!(!format!("{loaded:?}").contains(&URL_SAFE_NO_PAD.encode(&audit)));

        // A file from before audit keys: loading as development keys adds one, once.
        let legacy = dir.path().join("legacy.json");
        let mut stored: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
        stored.as_object_mut().unwrap().remove("audit_key");
        std::fs::write(&legacy, stored.to_string()).unwrap();
        assert!(KeySet::load(&legacy).unwrap().audit_key().is_none());
        let upgraded = KeySet::load_or_generate(&legacy).unwrap();
        let added = upgraded.audit_key().map(<[u8]>::to_vec).unwrap();
        assert_eq!(
            KeySet::load(&legacy).unwrap().audit_key(),
            Some(added.as_slice())
        );
        assert_eq!(
            upgraded.current().kid(),
            set.current().kid(),
            "the signing key stays"
        );
        let mut rotated = KeySet::load(&legacy).unwrap();
        rotated.rotate(OffsetDateTime::now_utc()).unwrap();
        assert_eq!(rotated.audit_key(), Some(added.as_slice()));
        // A malformed one is refused, not replaced.
        assert!(KeySet::parse(
            &set.to_json()
                .replace(&URL_SAFE_NO_PAD.encode(set.audit_key().unwrap()), "c2hvcnQ")
        )
        .is_err());
    }

    #[test]
    fn tampered_files_are_refused() {
        let set = KeySet::generate().unwrap_or_else(|e| panic!("{e}"));
        let good = set.to_json();
        assert!(KeySet::parse(&good).is_ok());
        let other = KeySet::generate().unwrap_or_else(|e| panic!("{e}"));
        let swapped_x = good.replace(
            &URL_SAFE_NO_PAD.encode(set.current().public_key()),
            &URL_SAFE_NO_PAD.encode(other.current().public_key()),
        );
        assert!(KeySet::parse(&swapped_x).is_err());
        assert!(KeySet::parse(r#"{"keys":[]}"#).is_err());
        assert!(KeySet::parse(&good.replace("EdDSA", "none")).is_err());
        assert!(KeySet::parse("not json").is_err());
    }
}
