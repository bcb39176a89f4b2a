//! The audit chain's head, kept in a file outside the database (`RAMPART_AUDIT_ANCHOR`).
//!
//! Defends against removing the newest audit rows: a chain whose last rows were deleted is
//! still a valid chain, so only a record of where it ended can show that it got shorter. Before
//! an action that appended a row is answered, the anchor file is replaced (atomically, mode
//! 0600) with the new head's sequence number and hash, sealed with the chain key so it cannot
//! be forged either; rows committed while a replacement is being written share the next one.
//! `rampart audit-log verify` fails when the chain ends before the anchored row or that row
//! differs.
//!
//! The anchor only moves forward along the chain. When a new row does not follow the anchored
//! one (another node appended in between, or rows were removed), the anchored row is looked up
//! first; if it is gone or changed, the anchor stops moving, so the evidence stays for
//! `verify`, and the departure is logged. The file is re-read, under a lock file, before every
//! move, so nodes that share one anchor file move it in turn and never past each other's
//! evidence; a file found deleted, replaced by an older one or forged also stops it.
//!
//! Every chain begins with a sealed row of its own (`audit_chain_started`), and an anchor
//! always names a row, so an anchor file copied from another deployment that shares the keys
//! file fits no row here.
//!
//! A server refuses to start on an anchor it cannot trust: forged, no longer reached by the
//! chain, followed by rows that do not link or seal, or missing (or recording an empty chain)
//! while the database shows the chain was in use: sealed events, users but no events, or row
//! numbers handed out past the newest row (rows deleted). Deleting the file, or the rows with
//! it, must not wipe the record of where the chain ended. Only a chain holding nothing but its
//! start, or one from before keyed chains, is anchored without asking; otherwise `rampart
//! audit-log anchor` does it, once the operator has checked the chain (a new node joining a
//! running cluster, say).
//!
//! Known limit: someone who can rewrite both the database and the anchor file can roll both
//! back to an earlier moment (or start over, users and all). Each "security event" log line
//! carries its row's number and seal, so logs shipped off the host are a third witness that
//! `rampart audit-log verify --witness SEQ:SEAL` checks.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::PoisonError;

use serde::{Deserialize, Serialize};

use super::chain::{Anchored, ChainKey};
use crate::store::{Appended, ChainEvidence, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("there is no audit anchor at {0}")]
    Missing(String),
    #[error("cannot read the audit anchor at {path}: {kind}")]
    Read {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("the audit anchor at {0} was not written with this deployment's key (forged, edited or copied from elsewhere)")]
    Forged(String),
    #[error("cannot write the audit anchor at {path}: {kind}")]
    Write {
        path: String,
        kind: std::io::ErrorKind,
    },
}

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    seq: i64,
    hash: String,
    mac: String,
}

/// Reads and checks the anchor at `path`.
pub fn read(path: &Path, key: &ChainKey) -> Result<Anchored, AnchorError> {
    unseal(path, key, &read_text(path)?)
}

fn read_text(path: &Path) -> Result<String, AnchorError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AnchorError::Missing(path.display().to_string()),
        kind => AnchorError::Read {
            path: path.display().to_string(),
            kind,
        },
    })
}

fn unseal(path: &Path, key: &ChainKey, text: &str) -> Result<Anchored, AnchorError> {
    let forged = || AnchorError::Forged(path.display().to_string());
    let record: Record = serde_json::from_str(text).map_err(|_| forged())?;
    if record.mac != key.seal_anchor(record.seq, &record.hash) {
        return Err(forged());
    }
    Ok(Anchored {
        seq: record.seq,
        hash: record.hash,
    })
}

/// Replaces the anchor at `path` with `anchored`: a private temporary file beside it, synced,
/// then renamed over it, so a crash leaves the old anchor or the new one, never half of one.
pub fn write(path: &Path, key: &ChainKey, anchored: &Anchored) -> Result<(), AnchorError> {
    write_text(path, &seal(path, key, anchored)?)
}

fn seal(path: &Path, key: &ChainKey, anchored: &Anchored) -> Result<String, AnchorError> {
    let record = Record {
        seq: anchored.seq,
        hash: anchored.hash.clone(),
        mac: key.seal_anchor(anchored.seq, &anchored.hash),
    };
    serde_json::to_string(&record).map_err(|e| AnchorError::Write {
        path: path.display().to_string(),
        kind: std::io::Error::from(e).kind(),
    })
}

fn write_text(path: &Path, text: &str) -> Result<(), AnchorError> {
    let failed = |e: std::io::Error| AnchorError::Write {
        path: path.display().to_string(),
        kind: e.kind(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        rampart::keys::create_private_dir(dir).map_err(failed)?;
    }
    // A name of this writer's own: writers sharing the file never replace each other's
    // half-written one.
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// Where this process has anchored the chain.
#[derive(Debug)]
struct State {
    anchored: Anchored,
    /// The chain or the file departed from the anchor: it no longer moves, as evidence.
    frozen: bool,
}

/// Why a server cannot start on its anchor.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "the audit anchor at {path} is missing, but the database shows the chain in use \
         ({found}): the anchor was deleted, or RAMPART_AUDIT_ANCHOR now points elsewhere. Check \
         the chain with `rampart audit-log verify`; `rampart audit-log anchor` then anchors its \
         current head (on a node joining a running cluster, that is the first step)"
    )]
    Missing { path: String, found: String },
    #[error(
        "the audit anchor at {path} records an empty chain, but the database shows the chain in \
         use ({found}): the anchor is from before those events, or from another deployment. \
         Check the chain with `rampart audit-log verify`; `rampart audit-log anchor --replace` \
         then anchors its current head"
    )]
    Overtaken { path: String, found: String },
    #[error(
        "the audit chain no longer reaches its anchor at {path} (row {seq} was removed or \
         rewritten); see `rampart audit-log verify`, and keep the anchor as evidence"
    )]
    Departed { path: String, seq: i64 },
    #[error(
        "the audit chain is broken after its anchored row: {broken}; see `rampart audit-log \
         verify`, and keep the anchor at {path} as evidence"
    )]
    Broken {
        path: String,
        broken: super::chain::Break,
    },
    #[error("{0}; see `rampart audit-log verify`")]
    File(#[from] AnchorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the database's chain may not be anchored without an operator: it shows the chain was
/// in use, so a missing anchor (or one of the empty chain) is not a fresh start. `None` for a
/// chain holding nothing but its start (and, from before keyed chains, unkeyed rows).
fn in_use(evidence: &ChainEvidence) -> Option<String> {
    if evidence.sealed_events > 0 {
        return Some(format!(
            "{} sealed event(s), up to row {}",
            evidence.sealed_events, evidence.newest
        ));
    }
    if evidence.issued > evidence.newest {
        return Some(format!(
            "row numbers were handed out up to {}, but the newest row is {}: rows were deleted",
            evidence.issued, evidence.newest
        ));
    }
    if evidence.legacy_rows == 0 && evidence.users > 0 {
        return Some(format!(
            "{} user(s), but no sealed event: the events were deleted",
            evidence.users
        ));
    }
    None
}

/// The chain's first sealed row, appended in a transaction of its own, where the chain has
/// none: what a new anchor points at.
pub async fn start_chain(
    store: &dyn Store,
    key: &ChainKey,
    legacy_rows: i64,
) -> Result<Anchored, StoreError> {
    let event = super::Event::server(super::Kind::ChainStarted)
        .detail(serde_json::json!({ "legacy_rows": legacy_rows }));
    let mut tx = store.begin().await?;
    let appended = tx.append_audit(event.into_row(), key).await?;
    tx.commit().await?;
    Ok(Anchored {
        seq: appended.seq,
        hash: appended.hash,
    })
}

/// Where a chain that may be anchored without an operator is anchored: its newest row when
/// that is already sealed (a chain start another node wrote), else a new chain start.
async fn fresh_head(
    store: &dyn Store,
    key: &ChainKey,
    evidence: &ChainEvidence,
) -> Result<Anchored, StoreError> {
    let head = store.audit_page(None, 1).await?.into_iter().next();
    match head {
        Some(head) if head.alg == super::chain::KEYED => Ok(Anchored {
            seq: head.seq,
            hash: head.hash,
        }),
        _ => start_chain(store, key, evidence.legacy_rows).await,
    }
}

/// The anchor a serving process keeps current.
#[derive(Debug)]
pub struct Anchor {
    path: PathBuf,
    state: tokio::sync::Mutex<State>,
    /// Committed rows not yet covered, by row number (see [`Anchor::advance`]).
    reported: std::sync::Mutex<BTreeMap<i64, Appended>>,
    /// Mirrors `State::frozen` for [`Anchor::report`], which does not wait for the state.
    frozen: AtomicBool,
    failures: rampart::telemetry::LogThrottle,
}

/// Rows remembered for the next move; past this, the oldest are forgotten.
const MAX_REPORTED: usize = 4096;

impl Anchor {
    /// Opens the anchor at `path` for a serving process (see the module header for when it
    /// refuses).
    pub async fn open(path: PathBuf, key: &ChainKey, store: &dyn Store) -> Result<Self, Untrusted> {
        let shown = path.display().to_string();
        let anchored = match read(&path, key) {
            Ok(anchored) if anchored.seq > 0 => {
                if !still_there(store, &anchored).await? {
                    return Err(Untrusted::Departed {
                        path: shown,
                        seq: anchored.seq,
                    });
                }
                anchored
            }
            outcome @ (Ok(_) | Err(AnchorError::Missing(_))) => {
                let evidence = store.chain_evidence().await?;
                if let Some(found) = in_use(&evidence) {
                    return Err(match outcome {
                        Ok(_) => Untrusted::Overtaken { path: shown, found },
                        Err(_) => Untrusted::Missing { path: shown, found },
                    });
                }
                let anchored = fresh_head(store, key, &evidence).await?;
                write(&path, key, &anchored)?;
                tracing::info!(anchor = %shown, seq = anchored.seq, "audit chain anchored");
                anchored
            }
            Err(err) => return Err(err.into()),
        };
        // Rows appended since the anchor last moved (by other nodes, or the command line
        // beside this server) must follow it, each with its seal.
        if let Err(broken) = super::chain::verify_after(store, key, &anchored).await? {
            return Err(Untrusted::Broken {
                path: shown,
                broken,
            });
        }
        Ok(Self {
            path,
            state: tokio::sync::Mutex::new(State {
                anchored,
                frozen: false,
            }),
            reported: std::sync::Mutex::default(),
            frozen: AtomicBool::new(false),
            failures: rampart::telemetry::LogThrottle::default(),
        })
    }

    /// Moves the anchor to cover a row just appended, returning once it does (or once the
    /// anchor is frozen, or a move failed and was logged).
    ///
    /// Appends that finish while a move is being written are covered together by the next
    /// move: one synced file per batch, not per row, and the file work runs on the blocking
    /// pool so a slow disk never stalls the threads serving requests.
    pub async fn advance(&self, key: &ChainKey, store: &dyn Store, appended: &Appended) {
        self.report(appended);
        let mut state = self.state.lock().await;
        if state.frozen || appended.seq <= state.anchored.seq {
            return;
        }
        let Some(_lock) = self.lock_file().await else {
            if let Some(left_out) = self.failures.admit() {
                tracing::error!(left_out, anchor = %self.path.display(), "the audit anchor's lock could not be taken; not moved this time");
            }
            return;
        };
        // Another node sharing the file may have moved it; the file may also have been
        // deleted or rolled back behind everyone's back.
        let path = self.path.clone();
        let Ok(on_disk) = tokio::task::spawn_blocking(move || read_text(&path)).await else {
            return; // the runtime is shutting down
        };
        match on_disk.and_then(|text| unseal(&self.path, key, &text)) {
            Ok(on_disk) if on_disk.seq > state.anchored.seq => state.anchored = on_disk,
            Ok(on_disk) if on_disk == state.anchored => {}
            outcome => {
                self.freeze(&mut state);
                let found =
                    outcome.map_or_else(|e| e.to_string(), |a| format!("it records row {}", a.seq));
                tracing::error!(
                    anchor = %self.path.display(),
                    seq = state.anchored.seq,
                    %found,
                    "the audit anchor file changed behind this process (deleted, rolled back or \
                     replaced); it is no longer moved: run `rampart audit-log verify`"
                );
                return;
            }
        }
        let Some((target, linked)) = self.newest_reported(&state.anchored) else {
            return;
        };
        if !linked && state.anchored.seq > 0 {
            // Rows this process did not see lie between: the anchored row must still be
            // there as it was.
            match still_there(store, &state.anchored).await {
                Ok(true) => {}
                Ok(false) => {
                    self.freeze(&mut state);
                    tracing::error!(
                        anchor = %self.path.display(),
                        seq = state.anchored.seq,
                        "the audit chain departed from its anchor (rows removed or rewritten); \
                         the anchor is kept as evidence: run `rampart audit-log verify`"
                    );
                    return;
                }
                // Checked again on the next append.
                Err(_) => return,
            }
        }
        let next = Anchored {
            seq: target.seq,
            hash: target.hash,
        };
        let path = self.path.clone();
        let written = match seal(&path, key, &next) {
            Ok(text) => tokio::task::spawn_blocking(move || write_text(&path, &text))
                .await
                .unwrap_or_else(|_| {
                    Err(AnchorError::Write {
                        path: self.path.display().to_string(),
                        kind: std::io::ErrorKind::Interrupted,
                    })
                }),
            Err(err) => Err(err),
        };
        match written {
            Ok(()) => state.anchored = next,
            Err(err) => {
                if let Some(left_out) = self.failures.admit() {
                    tracing::error!(error = %err, left_out, "the audit anchor could not be moved");
                }
            }
        }
    }

    /// Notes a committed row for the next move (bounded: the oldest are forgotten first, which
    /// only costs a look-up of the anchored row).
    fn report(&self, appended: &Appended) {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        reported.insert(appended.seq, appended.clone());
        while reported.len() > MAX_REPORTED {
            reported.pop_first();
        }
    }

    /// The newest reported row past `anchored`, and whether the reported rows link it to the
    /// anchored one (each row's `prev_hash` the hash of the row before). Forgets the rows the
    /// anchor already covers.
    fn newest_reported(&self, anchored: &Anchored) -> Option<(Appended, bool)> {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        *reported = reported.split_off(&(anchored.seq + 1));
        let newest = reported.last_key_value()?.1.clone();
        let mut expected = (anchored.seq + 1, anchored.hash.as_str());
        let linked = reported.iter().all(|(seq, row)| {
            let links = *seq == expected.0 && row.prev_hash == expected.1;
            expected = (seq + 1, row.hash.as_str());
            links
        });
        Some((newest, linked))
    }

    fn freeze(&self, state: &mut State) {
        state.frozen = true;
        self.frozen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// An exclusive lock on `<anchor>.lock`, shared with every process using this anchor;
    /// waits up to a second for it without blocking the runtime.
    async fn lock_file(&self) -> Option<std::fs::File> {
        let path = self.path.with_extension("lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).ok()?;
        for _ in 0..200 {
            match file.try_lock() {
                Ok(()) => return Some(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(std::fs::TryLockError::Error(_)) => return None,
            }
        }
        None
    }
}

/// Whether the anchored row is still in the table with the hash it was anchored with.
async fn still_there(store: &dyn Store, anchored: &Anchored) -> Result<bool, StoreError> {
    if anchored.seq == 0 {
        return Ok(true);
    }
    let found = store.audit_after(anchored.seq - 1, 1).await?;
    Ok(found
        .first()
        .is_some_and(|row| row.seq == anchored.seq && row.hash == anchored.hash))
}
