//! The official Kubernetes Python client for tests: the venv
//! `scripts/pyenv.sh` makes (scripts/setup.sh and scripts/test.sh run it),
//! and the script of tests/python that drives it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The venv's python: `$TMC_PYTHON` (exported by scripts/pyenv.sh), else
/// the venv's fixed place. Panics with how to make it when missing.
pub fn venv_python() -> PathBuf {
    let py = match std::env::var_os("TMC_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/tmc/pyenv/bin/python")
        }
    };
    let ok = Command::new(&py)
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import the Kubernetes Python client; create the venv with \
         `scripts/pyenv.sh` (scripts/setup.sh and scripts/test.sh run it), \
         or point TMC_PYTHON at a python that has `kubernetes` installed",
        py.display()
    );
    py
}

/// Runs tests/python/api_client.py with kubeconfigs of `root` and
/// `root:acme` (it creates `acme` through the first); panics with its
/// output unless it ends with `OK`. Returns its stdout.
pub fn run_api_client(root: &std::path::Path, acme: &std::path::Path) -> String {
    let python = venv_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/api_client.py");
    let t = Instant::now();
    let out = Command::new(&python)
        .arg(&script)
        .arg(root)
        .arg(acme)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}) after {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        out.status,
        t.elapsed()
    );
    assert!(
        stdout.trim_end().ends_with("OK"),
        "the script did not finish:\n{stdout}\n{stderr}"
    );
    stdout
}
