//! kubectl against a three-node shard (placeholder, filled below).
mod common;
use common::shard::Shard;

#[test]
fn shard_serves_kubectl() {
    let s = Shard::start();
    let kc = s.kubeconfig(2, "root");
    let (ok, out, err) = common::shard::kubectl_at(&kc, &["get", "ns", "-o", "name"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "namespace/default");
}
