//! `rampart user import`: brings an existing user table (for example FastAPI's, with passlib
//! bcrypt hashes) into rampart without knowing anyone's password.
//!
//! Defends against importing garbage as credentials: every row's email and username go through
//! the same parsers as registration, and a hash is accepted only in a format the verifier
//! understands (bcrypt or argon2) and at a cost within the hasher's ceiling
//! ([`rampart::password::CostCeiling`]), so a row cannot plant a hash whose every login pins a
//! hashing thread for hours. Imported bcrypt hashes are upgraded to argon2id at each user's
//! next successful login. Hashes are never printed, not even for rejected rows.

use std::path::Path;

use serde::Deserialize;

use crate::domain::{Email, Username};
use crate::service::accounts::NewAccount;
use crate::state::AppState;

/// One row, as CSV (with a header line) or one JSON object per line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    email: String,
    username: String,
    /// Also accepted as `hashed_password` (FastAPI's usual column) or `password_hash`.
    #[serde(alias = "hashed_password", alias = "password_hash")]
    hash: String,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub imported: usize,
    /// `(line, reason)` for each row left out.
    pub rejected: Vec<(usize, String)>,
}

/// Reads `path` (`.csv` or `.jsonl`) and creates a user for each valid row.
pub async fn import(state: &AppState, path: &Path) -> anyhow::Result<Report> {
    let rows = read_rows(path)?;
    let accounts = &state.services.accounts;
    let mut report = Report::default();
    for (line, row) in rows {
        let row = match row {
            Ok(row) => row,
            Err(reason) => {
                report.rejected.push((line, reason));
                continue;
            }
        };
        let email = match Email::parse(&row.email) {
            Ok(email) => email,
            Err(m) => {
                report.rejected.push((line, format!("email {m}")));
                continue;
            }
        };
        let username = match Username::parse(&row.username) {
            Ok(username) => username,
            Err(m) => {
                report.rejected.push((line, format!("username {m}")));
                continue;
            }
        };
        if !rampart::password::is_supported_hash(&row.hash) {
            report.rejected.push((
                line,
                "hash is not bcrypt ($2a$/$2b$/$2y$) or argon2 (PHC string)".into(),
            ));
            continue;
        }
        if let Err(why) = state.hasher.ceiling().check(&row.hash) {
            report.rejected.push((line, format!("hash refused: {why}")));
            continue;
        }
        let account = NewAccount {
            email: &email,
            username: &username,
            password_hash: row.hash,
            role: rampart::Role::User,
            vouched: false,
        };
        let event = crate::audit::Event::command_line(crate::audit::Kind::Register)
            .detail(serde_json::json!({"via": "import", "line": line}));
        match accounts.create(account, event).await {
            Ok(_) => report.imported += 1,
            Err(err) => report.rejected.push((line, err.to_string())),
        }
    }
    Ok(report)
}

type Parsed = Vec<(usize, Result<Row, String>)>;

fn read_rows(path: &Path) -> anyhow::Result<Parsed> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", path.display(), e.kind()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson") => Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                // serde's message can quote the input; never echo a row that holds a hash.
                (
                    i + 1,
                    serde_json::from_str(l)
                        .map_err(|e| format!("not a JSON row ({:?})", e.classify())),
                )
            })
            .collect()),
        Some("csv") => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            Ok(reader
                .deserialize::<Row>()
                .enumerate()
                .map(|(i, r)| {
                    (
                        i + 2,
                        r.map_err(|_| "not a CSV row with email,username,hash".to_owned()),
                    )
                })
                .collect())
        }
        _ => anyhow::bail!("name the file .csv (header: email,username,hash) or .jsonl"),
    }
}
