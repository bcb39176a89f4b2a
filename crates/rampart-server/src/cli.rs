//! The command line: `serve` (the default), `migrate`, `check`, `keys generate|rotate`.
//!
//! Exit codes: 0 success; 1 refused or failed (unsafe production posture, a runtime error);
//! 2 invalid configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rampart::keys::KeySet;
use rampart::posture::Posture;
use rampart::settings::KeysSource;
use rampart::Settings;

use crate::{app, store};

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
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new keys file (mode 0600) for RAMPART_KEYS_FILE. Refuses to overwrite.
    Generate {
        /// Where to write the file.
        #[arg(long)]
        out: PathBuf,
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
    // Key generation needs no configuration, so a broken environment cannot block it.
    if let Some(Command::Keys {
        action: KeysCommand::Generate { out },
    }) = &cli.command
    {
        return keys_generate(out);
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
            let _flush_logs_on_exit = rampart::telemetry::init(&settings);
            run_async(app::run(settings))
        }
        Command::Migrate => run_async(async move {
            store::open(&settings.database_url).await?;
            println!("migrations applied to {}", settings.database_url_redacted());
            Ok(())
        }),
        Command::Check => check(&settings),
        Command::Keys {
            action: KeysCommand::Rotate { file },
        } => keys_rotate(file, &settings),
        Command::Keys {
            action: KeysCommand::Generate { out },
        } => keys_generate(&out),
    }
}

fn run_async(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
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
    let posture = Posture::assess(settings);
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

fn keys_generate(out: &std::path::Path) -> ExitCode {
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
