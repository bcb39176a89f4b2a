//! The hashing threads: one per core, at a lower CPU priority than the threads serving
//! requests (on Linux), fed through a bounded queue, each keeping its own argon2 working
//! memory ([`Scratch`]).
//!
//! Defends the server's responsiveness during a login flood: hashing uses the CPU requests
//! leave idle instead of taking it from them, and a hash that panics fails its one request,
//! not the thread.

use std::sync::Arc;

use super::core::{Config, Scratch};
use super::HashError;

/// Work for a hashing thread, given that thread's working memory.
pub(super) type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// Threads that only hash. They exit when the last [`PasswordHasher`] clone is dropped (the
/// queue's sender goes with it).
#[derive(Debug)]
pub(super) struct HashPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl HashPool {
    pub(super) fn start(workers: usize, queue: usize, config: Config) -> Result<Self, HashError> {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for n in 0..workers {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("rampart-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    let mut scratch = Scratch::new(config);
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = job else { return };
                        // A panicking hash fails its one request (its answer channel drops),
                        // not the worker.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job(&mut scratch);
                        }));
                    }
                })
                .map_err(|err| HashError::Internal(format!("starting a hashing thread: {err}")))?;
        }
        Ok(Self { jobs })
    }

    pub(super) fn submit(&self, job: Job) -> Result<(), HashError> {
        // Admission already bounds the jobs to the channel's capacity, so this never blocks.
        self.jobs
            .send(job)
            .map_err(|_| HashError::Internal("hashing pool stopped".into()))
    }
}

/// Nice 10 for the calling thread: it gets about a tenth of a core that request threads want,
/// and all of an idle one. Linux keeps niceness per thread; elsewhere this does nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(error = %err, "hashing threads keep normal priority");
    }
}
