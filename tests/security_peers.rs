//! Mutual TLS between the replicas of a shard (`tmc serve --peer-tls-dir`):
//! the shard works over it (elections, forwarded writes), and a client
//! without a certificate from the cluster CA — plain TCP, TLS without a
//! certificate, a certificate from another CA — gets nothing from a raft
//! or internal HTTP port. Material that changes on disk is reloaded; bad
//! material keeps the old in force.

mod common;

use common::shard::{kubectl_at, Shard};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tmc() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_tmc"))
}

/// A separate CA and its material, as `tmc certs` writes it.
fn foreign_material() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = tmc()
        .args(["certs", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    dir
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut r = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        r.add(c.unwrap()).unwrap();
    }
    Arc::new(r)
}

/// A client trusting `trust_ca`, presenting the peer certificate of
/// `cert_dir` (or none).
fn client(trust_ca: &Path, cert_dir: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(trust_ca));
    Arc::new(match cert_dir {
        Some(d) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(d.join("peer.crt"))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_file(d.join("peer.key")).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

/// Connects to `port`, sends `GET /status` over TLS and returns what came
/// back, or why nothing did.
async fn exchange(port: u16, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from("tmc-peer").unwrap(), sock),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if out.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_talk_mutual_tls_and_refuse_strangers() {
    let shard = tokio::task::spawn_blocking(Shard::start).await.unwrap();
    let tls = shard.tls_dir();
    let foreign = foreign_material();

    // The shard works over mutual TLS: a write on a follower is forwarded
    // to the leader over the internal interface.
    let leader = shard.leader();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let kc = shard.kubeconfig(follower, "root");
    let cm = shard.dir.path().join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: over-mtls, namespace: default}\ndata: {a: b}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl_at(&kc, &["apply", "-f", cm.to_str().unwrap()]);
    assert!(ok, "a write through a follower: {err}");

    let kv = shard.kv[0];
    let raft = shard.raft[0];
    // A replica's own certificate gets an answer from the KV interface ...
    let answer = exchange(kv, client(&tls.join("ca.crt"), Some(&tls)))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ... nobody else does. Attack: TLS without a client certificate.
    let e = exchange(kv, client(&tls.join("ca.crt"), None))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    // Attack: a client certificate from another CA.
    let e = exchange(kv, client(&tls.join("ca.crt"), Some(foreign.path())))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    // Attack: the same on the raft port (where frames would be read).
    for cert in [None, Some(foreign.path())] {
        let r = exchange(raft, client(&tls.join("ca.crt"), cert)).await;
        assert!(r.is_err(), "raft port answered a stranger: {r:?}");
    }
    // Attack: plain TCP with bytes that look like a raft frame.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", raft))
        .await
        .unwrap();
    s.write_all(&[0u8; 64]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the node closes a plain connection")
        .unwrap_or(0);
    // Nothing, or a TLS alert record (content type 21) before the close.
    assert!(
        n == 0 || buf[0] == 21,
        "plain TCP got something other than a TLS alert: {:?}",
        &buf[..n]
    );
    // The node logged the refusals, and the shard is unharmed.
    let log = std::fs::read_to_string(shard.log_path(1)).unwrap();
    assert!(
        log.contains("refused a peer connection: TLS handshake failed"),
        "the refusal is logged"
    );
    let (ok, out, err) = kubectl_at(
        &shard.kubeconfig(1, "root"),
        &["get", "configmap", "over-mtls", "-o", "jsonpath={.data.a}"],
    );
    assert!(ok && out == "b", "{out} {err}");

    // The CLI: with the peer material it answers; without, or with a
    // foreign one, it fails.
    let kv_status = |dir: Option<&Path>| {
        let mut c = tmc();
        c.args(["kv", "--endpoint", &format!("127.0.0.1:{kv}")]);
        if let Some(d) = dir {
            c.arg("--peer-tls-dir").arg(d);
        }
        c.arg("status").output().unwrap()
    };
    assert!(kv_status(Some(&tls)).status.success());
    assert!(!kv_status(None).status.success());
    assert!(!kv_status(Some(foreign.path())).status.success());
}

#[test]
fn peer_material_is_reloaded_when_it_changes_and_bad_material_is_refused() {
    let a = foreign_material();
    let b = foreign_material();
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path| {
        for f in ["ca.crt", "peer.crt", "peer.key"] {
            std::fs::copy(from.join(f), dir.path().join(f)).unwrap();
        }
    };
    copy(a.path());
    let tls = tmc::raft::tls::PeerTls::load(dir.path()).unwrap();
    assert_eq!(tls.reload_if_changed(), Ok(false));
    copy(b.path());
    assert_eq!(tls.reload_if_changed(), Ok(true));
    // A key that does not parse: an error naming the file, old material
    // stays in force.
    std::fs::write(dir.path().join("peer.key"), "not a key").unwrap();
    let e = tls.reload_if_changed().unwrap_err();
    assert!(e.contains("peer.key"), "{e}");
    // A missing CA at start: a clear error.
    std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
    let e = tmc::raft::tls::PeerTls::load(dir.path()).unwrap_err();
    assert!(e.contains("ca.crt"), "{e}");
}

/// The certificate a TLS server at `port` presents, trusting `cas`.
async fn presented_cert(port: u16, cas: &[&Path]) -> Vec<u8> {
    let mut r = rustls::RootCertStore::empty();
    for ca in cas {
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(r)
        .with_no_client_auth();
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), sock)
        .await
        .unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serving_certificate_is_reloaded_when_its_files_change() {
    let shard = tokio::task::spawn_blocking(Shard::start).await.unwrap();
    let tls = shard.tls_dir();
    let other = foreign_material();
    let cas = [tls.join("ca.crt"), other.path().join("ca.crt")];
    let cas: Vec<&Path> = cas.iter().map(|p| p.as_path()).collect();
    let pem_der = |p: &Path| CertificateDer::from_pem_file(p).unwrap().to_vec();
    let port = shard.api[0];
    assert_eq!(
        presented_cert(port, &cas).await,
        pem_der(&tls.join("server.crt"))
    );
    // Rotate: a new serving certificate and key appear in the directory
    // (as a mounted Secret changes); new connections get it, no restart.
    std::fs::copy(other.path().join("server.key"), tls.join("server.key")).unwrap();
    std::fs::copy(other.path().join("server.crt"), tls.join("server.crt")).unwrap();
    let want = pem_der(&tls.join("server.crt"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while presented_cert(port, &cas).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the new serving certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A half-written pair (a key that does not parse) keeps the new
    // certificate in force; the API still answers.
    std::fs::write(tls.join("server.key"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(presented_cert(port, &cas).await, want);
}

/// Replicas authenticate each other by default: `tmc serve` with neither
/// `--peer-tls-dir` nor `--insecure-peers` refuses to start (clear message,
/// nothing created); with `--insecure-peers` it runs plain TCP and warns.
#[test]
fn serve_refuses_plaintext_peers_unless_asked_and_then_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node1");
    let (raft, kv) = (common::free_port(), common::free_port());
    let serve = |extra: &[&str]| {
        let mut c = tmc();
        c.args(["serve", "--node-id", "1"])
            .args(["--peers", &format!("1=127.0.0.1:{raft}")])
            .args(["--listen", &format!("127.0.0.1:{kv}")])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env("RUST_LOG", "info");
        c
    };
    let out = serve(&[]).output().unwrap();
    assert!(!out.status.success(), "started without peer security");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--peer-tls-dir") && err.contains("--insecure-peers"),
        "the refusal names both ways out: {err}"
    );
    assert!(!data.exists(), "nothing is created before the refusal");
    // Both at once make no sense.
    let out = serve(&["--insecure-peers", "--peer-tls-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = serve(&["--insecure-peers"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("WARN") && text.contains("plain TCP") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "it exited: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still running after the warning.
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "tmc serve --insecure-peers stopped: {text}");
    assert!(
        text.contains("WARN") && text.contains("--insecure-peers"),
        "no warning about plaintext peers: {text}"
    );
    assert!(data.exists());
}

/// The `chunks=N` of the last "received a snapshot in chunks" line of a
/// (possibly coloured) log.
fn snapshot_chunks(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("received a snapshot in chunks"))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let at = plain.find("chunks=")? + "chunks=".len();
    plain[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

/// A snapshot streams over the mutual-TLS peer connection like any frame:
/// a follower that was down while the log compacted past it catches up
/// from a checkpoint sent in several chunks, and serves every value.
#[test]
fn a_follower_catches_up_by_snapshot_over_mutual_tls() {
    let mut shard = Shard::start_with(&["--no-controllers", "--log-compact-threshold", "20"], "");
    let (behind, _) = shard.followers();
    let leader = shard.leader();
    shard.kill(behind);
    let tls = shard.tls_dir();
    let ports = shard.kv.clone();
    let kv = |id: u64, args: &[&str]| {
        tmc()
            .arg("kv")
            .arg("--peer-tls-dir")
            .arg(&tls)
            .args([
                "--endpoint",
                &format!("127.0.0.1:{}", ports[(id - 1) as usize]),
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    // 40 values of 100 KiB: about 4 MiB (under 2 MiB compressed), several
    // chunks.
    // Pseudo-random digits (xorshift), which compress little.
    let value = |i: u64| {
        let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let digits: String = (0..100 << 10)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'0' + (x % 10) as u8)
            })
            .collect();
        format!("\"{digits}\"")
    };
    for i in 0..40 {
        let out = kv(leader, &["put", &format!("root:t/default/k{i}"), &value(i)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    shard.spawn(behind);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let log_path = shard.log_path(behind);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !log().contains("installed a raft snapshot") {
        assert!(
            std::time::Instant::now() < deadline,
            "node {behind} installed no snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let chunks = snapshot_chunks(&log()).expect("the chunk count is logged");
    assert!(chunks >= 2, "a 4 MiB snapshot in {chunks} chunk(s)");
    for i in [0, 17, 39] {
        let out = kv(behind, &["get", "--local", &format!("root:t/default/k{i}")]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "k{i} on node {behind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inner = &value(i)[1..value(i).len() - 1];
        assert!(text.contains(inner), "k{i} differs on node {behind}");
    }
}
