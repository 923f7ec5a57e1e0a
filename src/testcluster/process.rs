//! Child processes and ports on loopback: what every cluster of the
//! harness (and the etcd cluster of `tmc bench raft`) is made of.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Errors of the harness and of the benchmarks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A TCP port for a child process to listen on: below the kernel's
/// ephemeral range (32768-60999), so that no outgoing connection can be
/// handed the port between this check and the child's bind, and never the
/// same twice in one process (tests run in parallel threads). Each process
/// starts at its own offset (from its pid) to stay clear of ports still
/// held by a previous process's children.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 24;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 12_000) as u16;
        let port = if port >= 32_000 { port - 12_000 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process that is SIGKILLed and reaped when the guard drops.
///
/// With `die_with_parent` the child also gets `PR_SET_PDEATHSIG =
/// SIGKILL`, so that it dies with the benchmark even when the benchmark
/// itself is killed. The kernel ties that signal to the *thread* that
/// spawned the child: ask for it only when spawning from the main thread
/// or a tokio worker (which live as long as the benchmark), never from
/// `spawn_blocking` or a test's own thread.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed, stdout discarded and stderr appended
    /// to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<ChildGuard, BoxError> {
        Self::spawn_with(name, cmd, log, true)
    }

    /// [`ChildGuard::spawn`], with or without the parent-death signal.
    pub fn spawn_with(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        die_with_parent: bool,
    ) -> Result<ChildGuard, BoxError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        if die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between
            // fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
        })
    }

    /// The process id, while it has not been killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the child still runs (not exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) | None => false,
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the child, if it was not
    /// killed.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: a plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            tracing::debug!(name = %self.name, "killed");
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `f` to completion on a runtime of its own, in a thread of its own,
/// so that the blocking methods of the harness work both inside an async
/// test (whose runtime must not be blocked from within) and outside any
/// runtime. A panic in `f` is resumed in the caller.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for a blocking call")
                .block_on(f)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Pseudo-random text of `len` characters over 64 symbols: neither LZ4 nor
/// zstd shrinks it much, so stored data is as large as it looks (snapshots
/// in many chunks, watch caches under pressure).
pub fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x & 63) as usize] as char
        })
        .collect()
}
