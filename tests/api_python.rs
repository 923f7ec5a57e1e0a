//! The official Kubernetes Python client (PyPI `kubernetes`) against a
//! three-node shard: tests/python/api_client.py drives Deployments and
//! ClusterRegistrations through create, list, watch, patch and delete in
//! two workspaces. The client comes from the venv scripts/pyenv.sh makes
//! (scripts/setup.sh and scripts/test.sh run it).
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tmc::testcluster::TestCluster;

/// The venv's python: `$TMC_PYTHON` (exported by scripts/pyenv.sh), else
/// the venv's fixed place. Panics with how to make it when missing.
fn venv_python() -> PathBuf {
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

#[test]
fn python_client_crud_watch_patch_across_workspaces() {
    let python = venv_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/api_client.py");
    let s = TestCluster::start();
    // Workspace root through one follower, root:acme through the other:
    // writes are forwarded to the leader, and the workspace created
    // through one is served at once by the other.
    let (f1, f2) = s.followers();
    let root = s.kubeconfig(f1, "root");
    let acme = s.kubeconfig(f2, "root:acme");
    let t = Instant::now();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&root)
        .arg(&acme)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    eprintln!("{stdout}(python client: {:?})", t.elapsed());
}
