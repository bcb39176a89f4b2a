//! The keys the service runs on, loaded and derived once at start-up: the signing keys (or
//! the HS256 secret), and the keys derived from the deployment's secret for list cursors, the
//! audit chain and sealed TOTP secrets.
//!
//! Defends against one secret serving two purposes: each derived key has a label of its own,
//! so a cursor MAC, an audit seal and a sealed secret can never be swapped for one another, and
//! the deployment secret is kept through signing-key rotations, so rotating keys breaks no
//! stored seal.

use anyhow::Context as _;
use rampart::keys::KeySet;
use rampart::pagination::CursorKey;
use rampart::tokens::{TokenPolicy, Tokens};
use secrecy::ExposeSecret;

use crate::config::{KeysSource, Settings, TokenAlgorithm};

/// Loads the signing keys the settings point at (generating development keys on first start).
pub fn load_keys(source: &KeysSource) -> anyhow::Result<KeySet> {
    match source {
        KeysSource::File(path) => Ok(KeySet::load(path)?),
        KeysSource::GeneratedForDevelopment(path) => Ok(KeySet::load_or_generate(path)?),
        KeysSource::Missing => {
            anyhow::bail!("no signing keys: set RAMPART_KEYS_FILE (see `rampart keys generate`)")
        }
    }
}

/// Token issuing and verification for these settings, with the keys they use.
pub fn token_service(settings: &Settings) -> anyhow::Result<(Tokens, Option<KeySet>)> {
    let policy = TokenPolicy {
        issuer: settings.tokens.issuer.clone(),
        audience: settings.tokens.audience.clone(),
        ttl: settings.access_ttl,
    };
    match (settings.tokens.algorithm, &settings.tokens.hs256_secret) {
        (TokenAlgorithm::Hs256, Some(secret)) => Ok((
            Tokens::hs256(secret.expose_secret().as_bytes(), policy)?,
            None,
        )),
        (TokenAlgorithm::Hs256, None) => anyhow::bail!("RAMPART_JWT_SECRET is required with HS256"),
        (TokenAlgorithm::EdDsa, _) => {
            let keys = load_keys(&settings.keys).context("loading signing keys")?;
            Ok((Tokens::eddsa(&keys, policy)?, Some(keys)))
        }
    }
}

/// The key that signs page cursors, derived from the token-signing secret every node already
/// shares: the current Ed25519 key seals, keys kept for verification still open; or the HS256
/// secret.
pub(super) fn cursor_key(settings: &Settings, keys: Option<&KeySet>) -> anyhow::Result<CursorKey> {
    if let Some(keys) = keys {
        let current = keys.current().signing_key().to_bytes();
        let previous: Vec<[u8; 32]> = keys
            .keys()
            .iter()
            .filter(|key| key.kid() != keys.current().kid())
            .map(|key| key.signing_key().to_bytes())
            .collect();
        return Ok(CursorKey::derive_all(
            &current,
            previous.iter().map(<[u8; 32]>::as_slice),
        ));
    }
    let secret = settings
        .tokens
        .hs256_secret
        .as_ref()
        .context("no signing key or secret to derive the cursor key from")?;
    Ok(CursorKey::derive(secret.expose_secret().as_bytes()))
}

/// The secret every node of a deployment shares and keeps through key rotations: the keys
/// file's audit key, or, with HS256 and no keys file, the shared secret. Keys derived from it
/// seal the audit chain and pick login decoys.
pub(super) fn deployment_secret<'a>(
    settings: &'a Settings,
    keys: Option<&'a KeySet>,
) -> anyhow::Result<&'a [u8]> {
    if let Some(keys) = keys {
        return keys.audit_key().with_context(|| {
            "the keys file has no audit_key (it predates keyed audit chains); \
             `rampart keys rotate` adds one"
        });
    }
    let secret = settings
        .tokens
        .hs256_secret
        .as_ref()
        .context("no keys file or secret to derive the audit chain key from")?;
    Ok(secret.expose_secret().as_bytes())
}

/// The key the audit chain is sealed with (see [`deployment_secret`]).
pub fn audit_chain_key(
    settings: &Settings,
    keys: Option<&KeySet>,
) -> anyhow::Result<crate::audit::chain::ChainKey> {
    deployment_secret(settings, keys).map(crate::audit::chain::ChainKey::derive)
}

/// The key TOTP secrets are sealed with at rest (see [`deployment_secret`]): kept through key
/// rotations, like the audit chain's.
pub fn totp_sealer(
    settings: &Settings,
    keys: Option<&KeySet>,
) -> anyhow::Result<crate::service::mfa::factor::SecretSealer> {
    deployment_secret(settings, keys).map(crate::service::mfa::factor::SecretSealer::derive)
}
