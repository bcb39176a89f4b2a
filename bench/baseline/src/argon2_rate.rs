//! The raw argon2id hash rate on this machine: one thread per core hashing for the given time,
//! at rampart's default parameters (m=19456 KiB, t=2, p=1). The ceiling for logins per second.
//!
//!   argon2-rate [seconds]   -> prints "hashes_per_second <n>"

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let Ok(params) = Params::new(19_456, 2, 1, None) else {
        eprintln!("invalid argon2 parameters");
        std::process::exit(1);
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..cores)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA")
                    .unwrap_or_else(|_| std::process::exit(1));
                let mut count = 0u64;
                while Instant::now() < deadline {
                    if argon2
                        .hash_password(b"correct horse battery staple", &salt)
                        .is_ok()
                    {
                        count += 1;
                    }
                }
                count
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("hashes_per_second {rate:.1}");
}
