//! The command line: `serve` (the default), `migrate`, `check`, `keys generate|rotate`,
//! `user create|import`, `audit-log verify`, and `audit <url>` (the black-box scanner).
//!
//! Exit codes: 0 success; 1 refused or failed (unsafe production posture, a runtime error);
//! 2 invalid configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rampart::keys::KeySet;

use crate::config::{KeysSource, Settings};
use crate::{app, store};

mod audit_log;

use audit_log::{anchor_audit_log, parse_witness, verify_audit_log};

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "A hardened API backend: every security layer on by default.",
    long_about = "A hardened API backend: every security layer on by default.\n\n\
        Configuration comes from RAMPART_* environment variables and an optional TOML file named \
        by RAMPART_CONFIG (see the README's configuration table)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Print the security posture of the effective configuration; exit 1 where production
    /// would refuse to start.
    Check,
    /// Manage token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// The tamper-evident audit log.
    AuditLog {
        #[command(subcommand)]
        action: AuditLogCommand,
    },
    /// Measure this machine and print the strongest argon2id parameters whose sign-in fits
    /// the budget with every hashing thread busy, and what the current setting costs. Exit 2
    /// when not even OWASP's minimum fits.
    HashParams {
        /// The longest one sign-in's hash may take, e.g. 250ms or 1s.
        #[arg(long, default_value = "250ms", value_parser = crate::hash_params::parse_budget)]
        budget: std::time::Duration,
    },
    /// Check any running HTTP API (rampart or not) against the security checklist, from
    /// outside. Exit 1 when a finding reaches --fail-on, 2 on a usage or connection error.
    Audit(Box<rampart_audit::AuditArgs>),
}

#[derive(Debug, Subcommand)]
pub enum AuditLogCommand {
    /// Check every row's MAC and link, and that the chain reaches the anchored row; exit 1
    /// naming what was found.
    Verify {
        /// A row the chain must hold with this seal, as a "security event" log line recorded
        /// it (its `seq` and `seal` fields): logs kept off the host catch a rollback of both
        /// the database and the anchor file. Repeatable.
        #[arg(long, value_name = "SEQ:SEAL", value_parser = parse_witness)]
        witness: Vec<crate::audit::chain::Anchored>,
    },
    /// Anchor the chain's current head in RAMPART_AUDIT_ANCHOR, after checking every row's
    /// MAC and link: once on a node joining a running cluster, or after an investigation.
    Anchor {
        /// Replace an existing anchor (it is evidence: keep a copy first).
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input (never from arguments, which
    /// other local users can see): `read -rs P && printf %s "$P" | rampart user create ...`.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// Import users with existing password hashes (bcrypt from passlib/FastAPI, or argon2)
    /// from a .csv (header: email,username,hash) or .jsonl file. bcrypt hashes are upgraded to
    /// argon2id at each user's next login. Exits 1 if any row was rejected.
    Import {
        /// The file to read.
        file: PathBuf,
    },
    /// Remove a user's second factor (TOTP and recovery codes), for someone who lost both and
    /// proved who they are another way; their password alone signs in again. Recorded as
    /// `mfa_disabled` via the command line. Exits 1 when the user has none.
    RemoveMfa {
        /// The user's username or email.
        login: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new keys file (mode 0600) for RAMPART_KEYS_FILE, or with --hs256 a new HS256
    /// secret for RAMPART_JWT_SECRET_FILE. Refuses to overwrite.
    Generate {
        /// Where to write the file.
        #[arg(long)]
        out: PathBuf,
        /// Write a 512-bit random HS256 secret (base64url) instead of an Ed25519 keys file.
        #[arg(long)]
        hs256: bool,
    },
    /// Add a new signing key; the previous one keeps verifying until its tokens have expired.
    Rotate {
        /// The keys file (default: RAMPART_KEYS_FILE).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The auditor looks at another server; this one's configuration has no say in it.
    if let Some(Command::Audit(args)) = &cli.command {
        return rampart_audit::main(args);
    }
    // Key generation needs no configuration, so a broken environment cannot block it.
    if let Some(Command::Keys {
        action: KeysCommand::Generate { out, hs256 },
    }) = &cli.command
    {
        return keys_generate(out, *hs256);
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let logs = rampart::telemetry::init(&settings.log_filter, settings.log_format);
            let json_log = logs
                .as_ref()
                .and_then(rampart::telemetry::LogGuard::json_lines);
            let exit = run_async(app::run(settings, json_log));
            // Flushes what is still pending.
            drop(logs);
            exit
        }
        Command::Migrate => run_async(async move {
            store::open(&settings.database_url).await?;
            println!("migrations applied to {}", settings.database_url_redacted());
            Ok(())
        }),
        Command::Check => check(&settings),
        Command::HashParams { budget } => crate::hash_params::run(settings.password_hash, budget),
        Command::Audit(args) => rampart_audit::main(&args),
        Command::Keys {
            action: KeysCommand::Rotate { file },
        } => keys_rotate(file, &settings),
        Command::Keys {
            action: KeysCommand::Generate { out, hs256 },
        } => keys_generate(&out, hs256),
        Command::AuditLog {
            action: AuditLogCommand::Verify { witness },
        } => run_async(verify_audit_log(settings, witness)),
        Command::AuditLog {
            action: AuditLogCommand::Anchor { replace },
        } => run_async(anchor_audit_log(settings, replace)),
        Command::User {
            action: UserCommand::Import { file },
        } => run_async(async move {
            let state = app::state(settings).await?;
            let report = crate::import::import(&state, &file).await?;
            for (line, reason) in &report.rejected {
                eprintln!("line {line}: {reason}");
            }
            println!(
                "imported {} user(s), rejected {}",
                report.imported,
                report.rejected.len()
            );
            if report.rejected.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} row(s) rejected", report.rejected.len())
            }
        }),
        Command::User {
            action: UserCommand::RemoveMfa { login },
        } => run_async(async move {
            let state = app::state(settings).await?;
            if state.services.mfa.remove_by_operator(&login).await? {
                println!("removed the second factor of {login}");
                Ok(())
            } else {
                anyhow::bail!("no user {login} with a second factor")
            }
        }),
        Command::User {
            action:
                UserCommand::Create {
                    email,
                    username,
                    admin,
                },
        } => match read_password_from_stdin() {
            Ok(password) => run_async(user_create(settings, email, username, password, admin)),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// The first line of standard input, refused when stdin is a terminal (it would echo).
fn read_password_from_stdin() -> Result<secrecy::SecretString, String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(
            "pipe the password on standard input (it would be echoed on a terminal): \
                    read -rs P && printf %s \"$P\" | rampart user create ..."
                .into(),
        );
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {}", e.kind()))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    line.clear();
    Ok(secrecy::SecretString::from(password))
}

async fn user_create(
    settings: Settings,
    email: String,
    username: String,
    password: secrecy::SecretString,
    admin: bool,
) -> anyhow::Result<()> {
    use crate::domain::{Email, Password, Username};
    let email = Email::parse(&email).map_err(|m| anyhow::anyhow!("email {m}"))?;
    let username = Username::parse(&username).map_err(|m| anyhow::anyhow!("username {m}"))?;
    let password = Password::parse(password, Some(username.as_str()), Some(email.as_str()))
        .map_err(|m| anyhow::anyhow!("password {m}"))?;
    let state = app::state(settings).await?;
    let hash = state
        .hasher
        .hash(password.into_secret())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let role = if admin {
        rampart::Role::Admin
    } else {
        rampart::Role::User
    };
    let event = crate::audit::Event::command_line(crate::audit::Kind::Register);
    let account = crate::service::accounts::NewAccount {
        email: &email,
        username: &username,
        password_hash: hash,
        role,
        vouched: true,
    };
    let user = state
        .services
        .accounts
        .create(account, event)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created {} ({}) with role {}",
        user.username,
        user.id,
        if admin { "admin" } else { "user" }
    );
    Ok(())
}

/// The async runtime a command runs on; when it cannot start, says so on stderr and gives the
/// exit code.
pub(crate) fn command_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

fn run_async(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match command_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(settings: &Settings) -> ExitCode {
    let posture = crate::posture::Posture::assess(settings);
    println!(
        "rampart {} security posture ({})",
        env!("CARGO_PKG_VERSION"),
        settings.env
    );
    print!("{}", posture.table());
    if posture.is_safe_for_production() {
        println!("verdict: safe for production");
        ExitCode::SUCCESS
    } else {
        let names: Vec<&str> = posture.failures().map(|i| i.setting).collect();
        println!(
            "verdict: production would refuse to start ({})",
            names.join(", ")
        );
        ExitCode::FAILURE
    }
}

fn keys_generate(out: &std::path::Path, hs256: bool) -> ExitCode {
    // A folder that does not exist yet (`/etc/rampart`) is made, private to its owner.
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        if let Err(err) = rampart::keys::create_private_dir(dir) {
            eprintln!("error: cannot create the folder {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
        println!("created {} (mode 0700)", dir.display());
    }
    if hs256 {
        return match rampart::keys::generate_hs256_secret()
            .and_then(|secret| rampart::keys::write_secret_file(out, &secret))
        {
            Ok(()) => {
                println!(
                    "wrote {} ({} random bytes, base64url); set RAMPART_TOKEN_ALG=HS256 and \
                     RAMPART_JWT_SECRET_FILE to it",
                    out.display(),
                    rampart::keys::HS256_SECRET_BYTES
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }
    match KeySet::generate().and_then(|set| set.write_new(out).map(|()| set)) {
        Ok(set) => {
            println!(
                "wrote {} (signing key {}); set RAMPART_KEYS_FILE to it",
                out.display(),
                set.current().kid()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn keys_rotate(file: Option<PathBuf>, settings: &Settings) -> ExitCode {
    let path = match (file, &settings.keys) {
        (Some(path), _) => path,
        (None, KeysSource::File(path) | KeysSource::GeneratedForDevelopment(path)) => path.clone(),
        (None, KeysSource::Missing) => {
            eprintln!("error: name the keys file with --file or RAMPART_KEYS_FILE");
            return ExitCode::from(2);
        }
    };
    let result = KeySet::load(&path).and_then(|mut set| {
        set.rotate(time::OffsetDateTime::now_utc())?;
        set.replace(&path)?;
        Ok(set)
    });
    match result {
        Ok(set) => {
            println!(
                "rotated {}: new signing key {}; {} key(s) still verify",
                path.display(),
                set.current().kid(),
                set.keys().len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
