//! Reads first: write requests run on threads of lower OS priority than lookups.
//!
//! FindContent comes from clinicians' systems waiting on a screen; bulk Updates
//! (a grundladdning, a source system's catch-up) can wait a little. Both need the
//! same two resources, CPU and the store, so the index gives lookups the CPU first:
//! every write request is handled, from its parsed body to its reply, on a runtime
//! of its own ([`WriteRuntime`]) whose threads are niced by `write_nice`; the
//! store's writer thread and RocksDB's compaction threads are niced too. The kernel
//! then runs a runnable lookup before write work, and writes get what lookups
//! leave (the scheduler shares CPU by weight: nice 19, the default, weighs 15
//! against nice 0's 1024). Write work never blocks a lookup's executor thread, and
//! a lookup never waits behind the parsing of a 1 MB Update on the same worker.
//!
//! Linux only (`setpriority` on a thread id); elsewhere the threads keep their
//! priority and the separate runtime still keeps write work off the lookups'
//! executor.

use std::future::Future;

/// Lowers the calling thread's priority by `nice` (added to its current nice,
/// at most 19). Raising the nice value needs no privilege.
pub fn lower_current_thread(nice: u8) {
    if nice > 0 {
        set_current_thread_nice(current_nice() + i32::from(nice));
    }
}

/// Sets the calling thread's nice value (at most 19; lowering it below the
/// current value needs privilege and is refused, with a warning, without it).
fn set_current_thread_nice(target: i32) {
    let target = target.min(19);
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with who = 0 touches only the calling thread (Linux nice
    // values are per thread).
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS as _, 0, target) != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, nice = target, "cannot set a write thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = target;
}

/// The calling thread's nice value (Linux; 0 elsewhere).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority with who = 0 reads the calling thread's nice value; errno
    // is the thread's own and tells a nice of -1 from a failure.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS as _, 0);
        if *libc::__errno_location() == 0 {
            nice
        } else {
            0
        }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// The runtime write requests are handled on: as many workers as cores, every
/// thread (workers and its blocking pool) `nice` above the thread that started it.
/// The target is absolute because a thread inherits its creator's nice value and
/// the blocking pool's threads are created by already niced workers.
pub struct WriteRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl WriteRuntime {
    pub fn start(nice: u8) -> std::io::Result<WriteRuntime> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let base = current_nice();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("ei-write")
            .on_thread_start(move || set_current_thread_nice(base + i32::from(nice)))
            .enable_all()
            .build()?;
        Ok(WriteRuntime {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the write runtime and waits for it from the caller's.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, tokio::task::JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("present until dropped")
            .spawn(work)
            .await
    }
}

impl Drop for WriteRuntime {
    fn drop(&mut self) {
        // Dropped from async code (the server's shutdown): no blocking wait here;
        // every write was answered before the service is dropped.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_is_nicer_and_others_are_not() {
        let before = current_nice();
        let lowered = std::thread::spawn(|| {
            lower_current_thread(5);
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 5).min(19));
        assert_eq!(current_nice(), before, "only the calling thread changes");
    }

    #[test]
    fn the_write_runtime_runs_work_on_niced_threads() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let base = current_nice();
        let writes = WriteRuntime::start(7).unwrap();
        let nice = rt.block_on(writes.run(async { current_nice() })).unwrap();
        assert_eq!(nice, (base + 7).min(19));
        let blocking = rt
            .block_on(
                writes.run(async { tokio::task::spawn_blocking(current_nice).await.unwrap() }),
            )
            .unwrap();
        assert_eq!(blocking, (base + 7).min(19), "its blocking pool too");
        rt.block_on(async { drop(writes) });
    }
}
