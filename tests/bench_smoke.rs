//! The load generators keep working: each `tmc bench` below runs for a moment
//! with tiny parameters and must print a well-formed report with no failed
//! request. No figure is checked: speed is measured in docs/benchmarks.md,
//! never in tests.
//!
//! Needs the etcd and kube-apiserver binaries of `scripts/testenv.sh build`
//! (as CI builds them); without them the tests fail and say so.

use serde_json::Value;
use std::process::{Command, Stdio};

fn tmc(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tmc"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run tmc");
    assert!(
        out.status.success(),
        "tmc {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tmc {args:?} printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn bench_raft_drives_a_tmc_shard_and_an_etcd_cluster() {
    let r = tmc(&[
        "bench",
        "raft",
        "--json",
        "--concurrency",
        "1,4",
        "--duration-secs",
        "0.5",
        "--warmup-secs",
        "0",
    ]);
    for side in ["tmc", "etcd"] {
        let levels = r[side].as_array().unwrap_or_else(|| panic!("{side}: {r}"));
        assert_eq!(levels.len(), 2, "{r}");
        for l in levels {
            assert!(l["writes"].as_u64().unwrap() > 0, "{side}: {l}");
            assert_eq!(l["errors"], 0, "{side}: {l}");
            assert!(l["p99_ms"].as_f64().unwrap() >= l["p50_ms"].as_f64().unwrap());
        }
    }
    assert!(r["etcd_version"].as_str().unwrap().starts_with('3'), "{r}");
    assert_eq!(r["ratio"].as_array().unwrap().len(), 2, "{r}");
}

#[test]
fn bench_failover_kills_the_leader_and_sees_writes_again() {
    let r = tmc(&[
        "bench",
        "failover",
        "--kills",
        "2",
        "--settle-secs",
        "0.2",
        "--json",
    ]);
    let samples = r["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{r}");
    for s in samples {
        assert!(s["failover_ms"].as_f64().unwrap() > 0.0, "{s}");
        assert_ne!(s["killed"], s["acked_by"], "{s}");
        assert!(s["term_increase"].as_u64().unwrap() >= 1, "{s}");
    }
    assert!(r["failover"]["p99_ms"].as_f64().is_some(), "{r}");
}

#[test]
fn bench_api_runs_against_a_kube_apiserver_and_cleans_up() {
    let env = tmc::testcluster::members::TestEnv::start(1);
    let kubeconfig = env.kubeconfig(0).to_str().expect("utf-8 path").to_string();
    let r = tmc(&[
        "bench",
        "api",
        "--kubeconfig",
        &kubeconfig,
        "--clients",
        "4",
        "--creates",
        "20",
        "--gets",
        "20",
        "--lists",
        "4",
        "--watches",
        "20",
        "--watch-rounds",
        "1",
        "--watch-rate",
        "50",
        "--json",
    ]);
    for op in ["create", "get", "list"] {
        assert_eq!(r[op]["errors"], 0, "{op}: {r}");
        assert!(r[op]["ok"].as_u64().unwrap() > 0, "{op}: {r}");
    }
    let w = &r["watch"];
    assert_eq!(w["watches"], 20, "{r}");
    assert_eq!(w["watch_errors"], 0, "{r}");
    assert_eq!(w["patches"], 20, "{r}");
    assert_eq!(w["events"], 20, "{r}");
    assert_eq!(w["events_missing"], 0, "{r}");
    assert_eq!(r["cleanup"], "deleted", "{r}");
    // The namespace is gone or going.
    let ns = r["namespace"].as_str().unwrap();
    let out = tmc::testcluster::members::kubectl(
        env.kubeconfig(0),
        &["get", "namespace", ns, "-o", "jsonpath={.status.phase}"],
    );
    match out {
        Ok(phase) => assert_eq!(phase, "Terminating", "namespace {ns}"),
        Err(e) => assert!(e.contains("NotFound"), "namespace {ns}: {e}"),
    }
}

#[test]
fn bench_placement_decides_every_placement_through_the_controller() {
    let r = tmc(&[
        "bench",
        "placement",
        "--clusters",
        "50",
        "--placements",
        "300",
        "--json",
    ]);
    assert_eq!(r["placements"], 300, "{r}");
    assert_eq!(r["bound"], 300, "every placement has a decision: {r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["decision_samples"], 300, "{r}");
    assert!(r["p99_us"].as_u64().is_some_and(|v| v > 0), "{r}");
}

#[test]
fn bench_shards_runs_the_workload_direct_and_through_the_proxy() {
    let r = tmc(&[
        "bench",
        "shards",
        "--json",
        "--rounds",
        "2",
        "--clients",
        "4",
        "--creates",
        "40",
        "--gets",
        "40",
        "--lists",
        "4",
        "--watches",
        "8",
        "--workspaces",
        "10",
    ]);
    let rounds = r["rounds"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(rounds.len(), 2, "{r}");
    // The order alternates, so drift does not favour one side.
    assert_ne!(rounds[0]["first"], rounds[1]["first"], "{r}");
    for round in rounds {
        for side in ["direct", "proxy"] {
            let s = &round[side];
            for op in ["create", "get", "list"] {
                assert_eq!(s["api"][op]["errors"], 0, "{side} {op}: {s}");
                assert!(s["api"][op]["ok"].as_u64().unwrap() > 0, "{side} {op}: {s}");
            }
            assert_eq!(s["api"]["watch"]["events_missing"], 0, "{side}: {s}");
            assert_eq!(s["api"]["cleanup"], "deleted", "{side}: {s}");
            assert_eq!(s["workspaces"]["ok"], 10, "{side}: {s}");
            assert_eq!(s["workspaces"]["errors"], 0, "{side}: {s}");
        }
        assert!(
            round["proxy"]["api"]["server"] != round["direct"]["api"]["server"],
            "{round}"
        );
        assert!(
            round["creates_per_s_ratio"].as_f64().unwrap() > 0.0,
            "{round}"
        );
    }
    assert!(r["proxy_rss_kib"].as_u64().unwrap() > 0, "{r}");
    // With a second shard: every workspace created, spread over both.
    let two = r["two_shards_workspaces"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(two.len(), 2, "{r}");
    for op in two {
        assert_eq!(op["ok"], 10, "{op}");
        assert_eq!(op["errors"], 0, "{op}");
    }
    let spread = &r["two_shards_spread"];
    let on = |s: &str| spread[s].as_u64().unwrap_or(0);
    assert_eq!(on("root") + on("two"), 20, "{spread}");
    assert!(on("two") > 0, "the second shard took none: {spread}");
}

#[test]
fn bench_rollout_rolls_the_dev_statefulset_and_kills_its_leader_losing_nothing() {
    let overlay = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays/dev");
    let r = tmc(&[
        "bench",
        "rollout",
        "--rounds",
        "1",
        "--overlay",
        overlay,
        "--json",
    ]);
    assert_eq!(r["rounds"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert!(r["acknowledged"].as_u64() > Some(20), "{r}");
    let killed = r["rounds"][0]["leader_killed_pause_ms"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(killed > 0.0, "a killed leader pauses the writer: {r}");
}
