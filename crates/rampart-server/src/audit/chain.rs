//! The audit chain: every row sealed to the one before it with a keyed MAC.
//!
//! Defends against rewriting history with database access alone. A plain hash chain can be
//! recomputed by anyone who edits a row, so each row's `hash` is an HMAC-SHA256, under a key
//! derived from the keys file (or the HS256 secret), over the previous row's `hash` and every
//! field of this one: an edited, inserted, reordered or recomputed row no longer verifies
//! without the key. The chain's end is checked against the anchor kept outside the database
//! ([`super::anchor`]), so removing the newest rows is caught too.
//!
//! Rows written before the chain was keyed keep their plain SHA-256 (`alg = 'sha256'`) and
//! still verify, but only as a prefix: an unkeyed row after a keyed one is a break.

use std::fmt;

use super::StoredEvent;
use crate::store::{Store, StoreError};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `alg` of rows sealed with the chain key.
pub const KEYED: &str = "hmac-sha256";
/// `alg` of rows written before the chain was keyed.
pub const LEGACY: &str = "sha256";

/// The key rows are sealed with. Derived, so the keys file's secret is never used directly.
pub struct ChainKey([u8; 32]);

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl Drop for ChainKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

impl ChainKey {
    /// The chain key for `secret` (the keys file's audit key, or the HS256 secret).
    pub fn derive(secret: &[u8]) -> Self {
        Self(rampart::tokens::hmac_sha256(
            secret,
            b"rampart audit chain v1",
        ))
    }

    /// The MAC of a row: over its `alg`, the previous row's hash and every field, as a JSON
    /// array, so no field can bleed into the next. The detail is sealed as the exact text
    /// stored, not as parsed: JSON that parses alike can read differently to another parser
    /// (a repeated key is the first value to SQLite, the last to serde), so any change to the
    /// stored bytes breaks the seal.
    pub fn seal(&self, prev_hash: &str, event: &StoredEvent) -> String {
        let fields = serde_json::json!([
            KEYED,
            prev_hash,
            event.id,
            event.at,
            event.kind,
            event.user_id,
            event.ip,
            event.request_id,
            event.detail_text,
        ]);
        hex(&rampart::tokens::hmac_sha256(
            &self.0,
            fields.to_string().as_bytes(),
        ))
    }

    /// The MAC of an anchor record, so a forged anchor file is refused too.
    pub fn seal_anchor(&self, seq: i64, hash: &str) -> String {
        hex(&rampart::tokens::hmac_sha256(
            &self.0,
            format!("rampart audit anchor\n{seq}\n{hash}").as_bytes(),
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The hash of a row written before the chain was keyed (plain SHA-256, same fields).
pub fn legacy_hash(prev_hash: &str, event: &StoredEvent) -> String {
    let fields = serde_json::json!([
        prev_hash,
        event.id,
        event.at,
        event.kind,
        event.user_id,
        event.ip,
        event.request_id,
        event.detail.to_string(),
    ]);
    crate::store::sha256_hex(fields.to_string().as_bytes())
}

/// The chain's end as the anchor recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    pub seq: i64,
    pub hash: String,
}

/// What verification found wrong, naming the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The row does not follow the one before it: a row was removed or reordered.
    Unlinked { seq: i64, id: String },
    /// The row's MAC does not match: edited, or written (or recomputed) without the key.
    Forged { seq: i64, id: String },
    /// A plain-hash row after keyed rows: recomputed without the key.
    Unkeyed { seq: i64, id: String },
    /// The chain ends before the anchored row: the newest rows were removed.
    Truncated {
        last: Option<i64>,
        anchored: i64,
        /// Recorded by a witness (a log line), not the anchor file.
        witness: bool,
    },
    /// The anchored row is there but is not the row that was anchored: the chain was
    /// rewritten from some point on.
    Departed { seq: i64, witness: bool },
    /// The anchor records an empty chain, which holds sealed events: an anchor from before
    /// them, or from another deployment.
    Overtaken { events: u64 },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlinked { seq, id } => write!(
                f,
                "row {seq} (event {id}) does not follow the row before it: a row was removed or reordered"
            ),
            Self::Forged { seq, id } => write!(
                f,
                "row {seq} (event {id}) does not match its MAC: it was edited, or written without the key"
            ),
            Self::Unkeyed { seq, id } => write!(
                f,
                "row {seq} (event {id}) is an unkeyed row after keyed ones: the chain was recomputed without the key"
            ),
            Self::Truncated {
                last,
                anchored,
                witness,
            } => write!(
                f,
                "the chain ends at row {} but {} records row {anchored}: the newest rows were removed",
                last.map_or_else(|| "0 (it is empty)".to_owned(), |seq| seq.to_string()),
                if *witness { "a witness" } else { "the anchor" }
            ),
            Self::Departed {
                seq,
                witness: false,
            } => write!(
                f,
                "the anchored row {seq} is missing or is not the row the anchor sealed: the chain was cut or rewritten"
            ),
            Self::Departed { seq, witness: true } => write!(
                f,
                "row {seq} is missing or is not the row its witness recorded: the chain was cut or rewritten"
            ),
            Self::Overtaken { events } => write!(
                f,
                "the anchor records an empty chain, but the chain holds {events} sealed event(s): the anchor is from before them, or from another deployment"
            ),
        }
    }
}

/// An intact chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intact {
    pub rows: u64,
    /// Of them, rows from before the chain was keyed.
    pub unkeyed: u64,
}

/// Walks the whole table in order against `key`, then checks that it reaches `anchor` (none
/// when anchoring a chain) and every `witness` (a row's number and seal as a log line
/// recorded it), each with the seal recorded.
pub async fn verify(
    store: &dyn Store,
    key: &ChainKey,
    anchor: Option<&Anchored>,
    witnesses: &[Anchored],
) -> Result<Result<Intact, Break>, StoreError> {
    let mut walk = Walk::new(key, GENESIS.to_owned(), false, Vec::new());
    walk.has_anchor = anchor.is_some();
    walk.checkpoints
        .extend(anchor.into_iter().chain(witnesses).cloned());
    walk.met = vec![false; walk.checkpoints.len()];
    let mut after = 0i64;
    loop {
        let batch = store.audit_after(after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for row in &batch {
            if let Err(broken) = walk.step(row) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(walk.finish())
}

/// Checks the rows after the anchored one (written by other nodes, or by the command line,
/// since this anchor last moved): each must follow the one before and carry its seal. The
/// newest of them, or `from` itself when there are none.
pub async fn verify_after(
    store: &dyn Store,
    key: &ChainKey,
    from: &Anchored,
) -> Result<Result<Anchored, Break>, StoreError> {
    let mut walk = Walk::new(key, from.hash.clone(), true, Vec::new());
    let mut head = from.clone();
    loop {
        let batch = store.audit_after(head.seq, 1000).await?;
        let Some(last) = batch.last() else { break };
        for row in &batch {
            if let Err(broken) = walk.step(row) {
                return Ok(Err(broken));
            }
        }
        head = Anchored {
            seq: last.seq,
            hash: last.hash.clone(),
        };
    }
    Ok(Ok(head))
}

/// Verification's state between rows.
struct Walk<'a> {
    key: &'a ChainKey,
    /// The anchor first (when `has_anchor`), then any witnesses: rows the chain must reach,
    /// as recorded.
    checkpoints: Vec<Anchored>,
    has_anchor: bool,
    met: Vec<bool>,
    prev: String,
    keyed: bool,
    last: Option<i64>,
    /// Sealed rows other than chain starts: what an anchor of the empty chain cannot cover.
    sealed_events: u64,
    intact: Intact,
}

impl<'a> Walk<'a> {
    fn new(key: &'a ChainKey, prev: String, keyed: bool, checkpoints: Vec<Anchored>) -> Self {
        Self {
            key,
            met: vec![false; checkpoints.len()],
            checkpoints,
            has_anchor: false,
            prev,
            keyed,
            last: None,
            sealed_events: 0,
            intact: Intact {
                rows: 0,
                unkeyed: 0,
            },
        }
    }

    fn step(&mut self, row: &StoredEvent) -> Result<(), Break> {
        let named = || (row.seq, row.id.clone());
        if row.prev_hash != self.prev {
            let (seq, id) = named();
            return Err(Break::Unlinked { seq, id });
        }
        match row.alg.as_str() {
            KEYED => {
                if self.key.seal(&self.prev, row) != row.hash {
                    let (seq, id) = named();
                    return Err(Break::Forged { seq, id });
                }
                self.keyed = true;
                if row.kind != super::CHAIN_STARTED {
                    self.sealed_events += 1;
                }
            }
            LEGACY if !self.keyed => {
                if legacy_hash(&self.prev, row) != row.hash {
                    let (seq, id) = named();
                    return Err(Break::Forged { seq, id });
                }
                self.intact.unkeyed += 1;
            }
            _ => {
                let (seq, id) = named();
                return Err(Break::Unkeyed { seq, id });
            }
        }
        let first_witness = usize::from(self.has_anchor);
        for (n, (checkpoint, met)) in self.checkpoints.iter().zip(&mut self.met).enumerate() {
            if row.seq == checkpoint.seq {
                if row.hash != checkpoint.hash {
                    return Err(Break::Departed {
                        seq: row.seq,
                        witness: n >= first_witness,
                    });
                }
                *met = true;
            }
        }
        self.prev.clone_from(&row.hash);
        self.last = Some(row.seq);
        self.intact.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<Intact, Break> {
        let first_witness = usize::from(self.has_anchor);
        for (n, (checkpoint, met)) in self.checkpoints.iter().zip(&self.met).enumerate() {
            let witness = n >= first_witness;
            if checkpoint.seq == 0 {
                // An anchor of the empty chain (written before chains began with a row of
                // their own) covers nothing but chain starts.
                if self.sealed_events > 0 {
                    return Err(Break::Overtaken {
                        events: self.sealed_events,
                    });
                }
                continue;
            }
            if *met {
                continue;
            }
            if self.last.is_none_or(|last| last < checkpoint.seq) {
                return Err(Break::Truncated {
                    last: self.last,
                    anchored: checkpoint.seq,
                    witness,
                });
            }
            // Rows go on past the recorded one, which is gone.
            return Err(Break::Departed {
                seq: checkpoint.seq,
                witness,
            });
        }
        Ok(self.intact)
    }
}
