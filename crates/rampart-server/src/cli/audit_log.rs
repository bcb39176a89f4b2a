//! `rampart audit-log verify|anchor`: checking the audit chain against its key and its anchor
//! outside the server, and anchoring a chain an operator has checked.
//!
//! Defends against tampering going unseen: rows removed or rewritten in the database break the
//! chain or fall short of the anchor, and an anchor is only ever written for a chain that
//! verifies.

use crate::config::Settings;
use crate::{app, store};

/// `--witness SEQ:SEAL`: a row number and its 64-hex-digit seal.
pub(super) fn parse_witness(text: &str) -> Result<crate::audit::chain::Anchored, String> {
    let (seq, seal) = text
        .split_once(':')
        .ok_or("expected SEQ:SEAL, as a security event's log line gives them")?;
    let seq: i64 = seq
        .parse()
        .ok()
        .filter(|seq| *seq > 0)
        .ok_or("SEQ is a row number (1 or more)")?;
    if seal.len() != 64 || !seal.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("SEAL is the row's seal: 64 lower-case hex digits".into());
    }
    Ok(crate::audit::chain::Anchored {
        seq,
        hash: seal.to_owned(),
    })
}

/// `rampart audit-log verify`: the whole chain against the key, its end against the anchor,
/// and any witnesses.
pub(super) async fn verify_audit_log(
    settings: Settings,
    witnesses: Vec<crate::audit::chain::Anchored>,
) -> anyhow::Result<()> {
    use crate::audit::{anchor, chain};
    let (_, keys) = app::token_service(&settings)?;
    let key = app::audit_chain_key(&settings, keys.as_ref())?;
    let store = store::open(&settings.database_url).await?;
    let anchored = match anchor::read(&settings.audit_anchor, &key) {
        Ok(anchored) => anchored,
        Err(err) => {
            println!("audit log cannot be trusted: {err}; removed rows would go unseen");
            anyhow::bail!("audit anchor unusable")
        }
    };
    match chain::verify(store.as_ref(), &key, Some(&anchored), &witnesses).await? {
        Ok(intact) => {
            let also = if witnesses.is_empty() {
                String::new()
            } else {
                format!(" and holds the {} witnessed row(s)", witnesses.len())
            };
            println!(
                "audit log intact: {} event(s), {} of them from before the chain was keyed; \
                 it reaches the anchored row {}{also}",
                intact.rows, intact.unkeyed, anchored.seq
            );
            Ok(())
        }
        Err(broken) => {
            println!("audit log broken: {broken}");
            anyhow::bail!("audit log tampered with")
        }
    }
}

/// `rampart audit-log anchor`: anchors a chain that verifies, at its current head (a chain
/// with no sealed row yet is started first, so the anchor names a row of its own).
pub(super) async fn anchor_audit_log(settings: Settings, replace: bool) -> anyhow::Result<()> {
    use crate::audit::{anchor, chain};
    let path = &settings.audit_anchor;
    if path.exists() && !replace {
        anyhow::bail!(
            "an anchor exists at {}: it is evidence; `--replace` replaces it (keep a copy first)",
            path.display()
        );
    }
    let (_, keys) = app::token_service(&settings)?;
    let key = app::audit_chain_key(&settings, keys.as_ref())?;
    let store = store::open(&settings.database_url).await?;
    let intact = match chain::verify(store.as_ref(), &key, None, &[]).await? {
        Ok(intact) => intact,
        Err(broken) => {
            println!("not anchored: audit log broken: {broken}");
            anyhow::bail!("audit log tampered with")
        }
    };
    let head = store.audit_page(None, 1).await?.into_iter().next();
    let head = match head {
        Some(row) if row.alg == chain::KEYED => chain::Anchored {
            seq: row.seq,
            hash: row.hash,
        },
        _ => {
            let legacy = i64::try_from(intact.unkeyed).unwrap_or(i64::MAX);
            anchor::start_chain(store.as_ref(), &key, legacy).await?
        }
    };
    if let Ok(previous) = anchor::read(path, &key) {
        println!("replacing the anchor at row {}", previous.seq);
    }
    anchor::write(path, &key, &head)?;
    println!(
        "anchored the audit chain at row {} in {} ({} event(s) verified)",
        head.seq,
        path.display(),
        intact.rows
    );
    Ok(())
}
