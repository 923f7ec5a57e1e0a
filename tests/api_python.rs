//! The official Kubernetes Python client (PyPI `kubernetes`) against a
//! three-node shard: tests/python/api_client.py drives Deployments and
//! ClusterRegistrations through create, list, watch, patch and delete in
//! two workspaces. The client comes from the venv scripts/pyenv.sh makes
//! (scripts/setup.sh and scripts/test.sh run it).
use std::time::Instant;
use tmc::testcluster::TestCluster;

#[test]
fn python_client_crud_watch_patch_across_workspaces() {
    let s = TestCluster::start();
    // Workspace root through one follower, root:acme through the other:
    // writes are forwarded to the leader, and the workspace created
    // through one is served at once by the other.
    let (f1, f2) = s.followers();
    let root = s.kubeconfig(f1, "root");
    let acme = s.kubeconfig(f2, "root:acme");
    let t = Instant::now();
    let stdout = tmc::testcluster::python::run_api_client(&root, &acme);
    eprintln!("{stdout}(python client: {:?})", t.elapsed());
}
