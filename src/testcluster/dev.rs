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
    /// Starts `tmc dev --listen 127.0.0.1:0 --data-dir data` with `extra`
    /// flags; returns it and the URL it printed once it serves.
    pub fn start(data: &Path, extra: &[&str]) -> (Dev, String) {
        let mut child = Command::new(super::tmc_binary())
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("tmc dev: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .unwrap_or_else(|| panic!("tmc dev printed no URL: {line:?}"))
            .to_string();
        (
            Dev {
                child,
                _stdout: stdout,
            },
            url,
        )
    }
}
