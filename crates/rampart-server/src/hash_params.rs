//! `rampart hash-params --budget 250ms`: the strongest argon2id parameters this machine
//! computes within a sign-in latency budget, measured, not guessed.
//!
//! Defends against parameters chosen blind: too weak for the hardware (an attacker with the
//! table pays what the server paid), or so strong that a morning peak of sign-ins queues past
//! the budget and is shed. Each candidate is timed the way a peak runs it: every hashing thread
//! (one per core, as the server runs them) busy at once, through the same pool and hashing core
//! the server uses. For each pass count from 1 to 4 the memory is raised (doubling, then
//! halving the gap to 1 MiB) while a sign-in stays within the budget, never below OWASP's
//! equivalent minimum for that pass count; the strongest is the one with the most
//! memory x passes, which is what a guess costs an attacker.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rampart::password::PasswordHasher;
use rampart::settings::HashParams;
use secrecy::SecretString;

/// OWASP's equivalent minimum memory (KiB) for 1 to 4 passes.
const MINIMUM_KIB: [(u32, u32); 4] = [(1, 47_104), (2, 19_456), (3, 12_288), (4, 9_216)];
/// The most memory one hash may take (the settings' bound).
const MAX_KIB: u32 = 1024 * 1024;
/// Rounds of one hash per thread, averaged, per measurement (after one untimed round).
const ROUNDS: u32 = 2;

/// What one candidate costs.
struct Measured {
    params: HashParams,
    /// Per sign-in, with every hashing thread busy.
    latency: Duration,
}

/// Runs the search and prints the table; exit 2 when not even the minimum fits the budget.
pub fn run(current: HashParams, budget: Duration) -> ExitCode {
    let runtime = match crate::cli::command_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    println!(
        "argon2id on this machine: {threads} hashing threads (one per core), every one busy; budget {} ms per sign-in",
        budget.as_millis()
    );
    let measure = |params: HashParams| runtime.block_on(latency(params, threads));
    let Some(now) = measure(current) else {
        eprintln!("error: the configured parameters cannot be computed");
        return ExitCode::FAILURE;
    };
    let mut best: Option<Measured> = None;
    for (passes, floor) in MINIMUM_KIB {
        let found = strongest_memory(passes, floor, budget, &measure);
        match &found {
            Some(m) => println!(
                "  t={passes}  m={:>7} KiB ({:>4} MiB per thread)  {:>6.1} ms per sign-in",
                m.params.memory_kib,
                m.params.memory_kib / 1024,
                ms(m.latency)
            ),
            None => println!("  t={passes}  OWASP's minimum (m={floor}) does not fit the budget"),
        }
        if let Some(m) = found {
            let strength = |p: HashParams| u64::from(p.memory_kib) * u64::from(p.iterations);
            if best
                .as_ref()
                .is_none_or(|b| strength(m.params) > strength(b.params))
            {
                best = Some(m);
            }
        }
    }
    println!(
        "now: RAMPART_PASSWORD_HASH={current}: {:.1} ms per sign-in, about {:.0} sign-ins a second",
        ms(now.latency),
        per_second(now.latency, threads)
    );
    let Some(best) = best else {
        eprintln!(
            "error: not even OWASP's minimum fits {} ms per sign-in on this machine; production refuses weaker parameters, so raise the budget or the hardware",
            budget.as_millis()
        );
        return ExitCode::from(2);
    };
    println!(
        "strongest within the budget: RAMPART_PASSWORD_HASH={}  ({:.1} ms per sign-in, about {:.0} sign-ins a second, {} MiB per hashing thread)",
        best.params,
        ms(best.latency),
        per_second(best.latency, threads),
        best.params.memory_kib / 1024
    );
    println!(
        "Stronger parameters cost every sign-in and cap sign-ins a second (a peak beyond it is shed with 503); they raise what each guess costs an attacker holding the table in the same proportion."
    );
    ExitCode::SUCCESS
}

/// The most memory at `passes` (from `floor`, in whole MiB) whose sign-in fits `budget`.
fn strongest_memory(
    passes: u32,
    floor: u32,
    budget: Duration,
    measure: &dyn Fn(HashParams) -> Option<Measured>,
) -> Option<Measured> {
    let at = |memory_kib: u32| HashParams {
        memory_kib,
        iterations: passes,
        parallelism: 1,
    };
    let mut good = measure(at(floor)).filter(|m| m.latency <= budget)?;
    let mut bad = None;
    while bad.is_none() && good.params.memory_kib < MAX_KIB {
        let next = (good.params.memory_kib.saturating_mul(2) / 1024 * 1024).min(MAX_KIB);
        match measure(at(next)) {
            Some(m) if m.latency <= budget => good = m,
            _ => bad = Some(next),
        }
    }
    while let Some(high) = bad {
        let low = good.params.memory_kib;
        let middle = (low + (high - low) / 2) / 1024 * 1024;
        if middle <= low || high - low <= 1024 {
            break;
        }
        match measure(at(middle)) {
            Some(m) if m.latency <= budget => good = m,
            _ => bad = Some(middle),
        }
    }
    Some(good)
}

/// The time one sign-in takes while every hashing thread is busy: `threads` hashes at once,
/// [`ROUNDS`] times over, through the server's own pool.
async fn latency(params: HashParams, threads: usize) -> Option<Measured> {
    let hasher = PasswordHasher::new(params, threads, threads).ok()?;
    // One untimed round: each thread's working memory is allocated once, then kept, as in the
    // server.
    let mut started = Instant::now();
    for round in 0..=ROUNDS {
        if round == 1 {
            started = Instant::now();
        }
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..threads {
            let hasher = hasher.clone();
            batch.spawn(async move {
                hasher
                    .hash(SecretString::from("measure this machine"))
                    .await
            });
        }
        while let Some(outcome) = batch.join_next().await {
            outcome.ok()?.ok()?;
        }
    }
    Some(Measured {
        params,
        latency: started.elapsed() / ROUNDS,
    })
}

/// `250ms`, `1s`: a budget between 1 ms and 60 s.
pub fn parse_budget(raw: &str) -> Result<Duration, String> {
    let budget = match raw.trim().strip_suffix("ms") {
        Some(millis) => millis
            .parse::<u64>()
            .ok()
            .filter(|_| millis.bytes().all(|b| b.is_ascii_digit()))
            .map(Duration::from_millis)
            .ok_or_else(|| format!("`{raw}`: milliseconds must be a whole number"))?,
        None => rampart::settings::parse_duration(raw)?,
    };
    if budget < Duration::from_millis(1) || budget > Duration::from_secs(60) {
        return Err(format!("`{raw}`: the budget must be between 1ms and 60s"));
    }
    Ok(budget)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_second(latency: Duration, threads: usize) -> f64 {
    f64::from(u32::try_from(threads).unwrap_or(u32::MAX)) / latency.as_secs_f64().max(f64::EPSILON)
}
