//! `tmc dev` as a test's child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `tmc dev`, killed on drop; its stdout is kept open (a
/// closed pipe would fail its next print).
pub struct Dev {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// Sends SIGTERM (what the kubelet sends) and waits up to `within`
    /// for the process to exit; its exit status, or `None` if it did not.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Starts `tmc dev --listen 127.0.0.1:0 --data-dir data` with `extra`
    /// flags; returns it and the URL it printed once it serves. Panics
    /// (with its log) if it does not start: see [`Dev::try_start`].
    pub fn start(data: &Path, extra: &[&str]) -> (Dev, String) {
        Self::try_start(data, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Dev::start`], or why not (with the end of its log, which goes to
    /// `data` + `.log`).
    pub fn try_start(data: &Path, extra: &[&str]) -> Result<(Dev, String), String> {
        let mut log_path = data.as_os_str().to_os_string();
        log_path.push(".log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("{}: {e}", Path::new(&log_path).display()))?;
        let mut child = Command::new(super::tmc_binary())
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("tmc dev: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let dev = Dev {
            child,
            _stdout: stdout,
        };
        match line.split_whitespace().find(|w| w.starts_with("https://")) {
            Some(url) => Ok((dev, url.to_string())),
            None => Err(format!(
                "tmc dev printed no URL ({line:?}); its log ends:\n{}",
                super::log_tail(Path::new(&log_path), 20)
            )),
        }
    }
}
