//! Mutual TLS between the replicas of a shard (`tmc serve --peer-tls-dir`)
//! and the peer identities it carries: the shard works over it
//! (elections, forwarded writes); a client without a certificate of the
//! peer CA — plain TCP, TLS without a certificate, another CA's
//! certificate, a user's certificate of the API's CA — gets nothing from a
//! raft or internal HTTP port; a replica's certificate speaks only for
//! that replica; a frame that would make raft-rs panic is refused; nothing
//! an attacker sends changes the shard or restarts a replica. Material that
//! changes on disk is reloaded; bad material keeps the old in force. And:
//! `/readyz` means ready, and a flood of API work causes no election.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tmc::testcluster::members::kubectl_at;
use tmc::testcluster::TestCluster;
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

/// A certificate and key, PEM.
struct Pem {
    cert: String,
    key: String,
}

impl Pem {
    /// `peer.crt` and `peer.key` of a directory.
    fn peer(dir: &Path) -> Pem {
        Pem {
            cert: std::fs::read_to_string(dir.join("peer.crt")).unwrap(),
            key: std::fs::read_to_string(dir.join("peer.key")).unwrap(),
        }
    }
}

/// A client trusting `trust_ca`, presenting `cert` (or none).
fn client_with(trust_ca: &Path, cert: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(trust_ca));
    Arc::new(match cert {
        Some(p) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(p.cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

/// A client trusting `trust_ca`, presenting the peer certificate of
/// `cert_dir` (or none).
fn client(trust_ca: &Path, cert_dir: Option<&Path>) -> Arc<rustls::ClientConfig> {
    client_with(trust_ca, cert_dir.map(Pem::peer).as_ref())
}

/// A TLS connection to 127.0.0.1:`port`, verifying the server as `name`,
/// that the server did not refuse at once.
async fn connect(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut s = handshake(port, cfg, name).await?;
    // TLS 1.3 finishes the client's side of the handshake before the
    // server has judged the client's certificate: a refusal shows as an
    // alert on the first read.
    let mut probe = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut probe)).await {
        Err(_) => Ok(s),
        Ok(Ok(0)) => Err("closed after the handshake".into()),
        Ok(Ok(_)) => Err("unexpected bytes after the handshake".into()),
        Ok(Err(e)) => Err(format!("refused after the handshake: {e}")),
    }
}

/// A TLS connection to 127.0.0.1:`port`, verifying the server as `name`.
async fn handshake(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from(name.to_string()).unwrap(), sock),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    Ok(s)
}

/// Sends one HTTP/1.1 request over TLS and returns what came back, or why
/// nothing did.
async fn request(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    head: &str,
    body: &[u8],
) -> Result<String, String> {
    let mut s = connect(port, cfg, "tmc-peer").await?;
    let msg = format!(
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(msg.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    if out.is_empty() {
        return Err(format!("no answer: {read:?}"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Connects to `port`, sends `GET /status` over TLS and returns what came
/// back, or why nothing did.
async fn exchange(port: u16, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    request(port, cfg, "GET /status HTTP/1.1", b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_talk_mutual_tls_and_refuse_strangers() {
    let shard = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let tls = shard.tls_dir();
    let peer_ca = tls.join("peer-ca.crt");
    let foreign = foreign_material();

    // The shard works over mutual TLS: a write on a follower is forwarded
    // to the leader over the internal interface.
    let leader = shard.leader();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let kc = shard.kubeconfig(follower, "root");
    let cm = shard.dir().join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: over-mtls, namespace: default}\ndata: {a: b}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl_at(&kc, &["apply", "-f", cm.to_str().unwrap()]);
    assert!(ok, "a write through a follower: {err}");

    let kv = shard.kv_port(1);
    let raft = shard.raft_port(1);
    // A replica's own certificate and the operator's get an answer from
    // the KV interface ...
    for dir in [shard.node_tls_dir(2), tls.clone()] {
        let answer = exchange(kv, client(&peer_ca, Some(&dir))).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // ... nobody else does. Attack: TLS without a client certificate.
    let e = exchange(kv, client(&peer_ca, None)).await.unwrap_err();
    assert!(!e.is_empty());
    // Attack: a client certificate from another CA.
    let e = exchange(kv, client(&peer_ca, Some(foreign.path())))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    // Attack: the same on the raft port (where frames would be read).
    for cert in [None, Some(foreign.path())] {
        let r = connect(raft, client(&peer_ca, cert), "tmc-peer-1").await;
        assert!(r.is_err(), "raft port took a stranger");
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

    // The CLI: with the operator's material it answers; without, with a
    // foreign one, or with a replica directory of another shard, it fails.
    let kv_status = |dir: Option<&Path>| {
        let mut c = tmc();
        c.args(["kv", "--endpoint", &format!("127.0.0.1:{kv}")]);
        if let Some(d) = dir {
            c.arg("--peer-tls-dir").arg(d);
        }
        c.arg("status").output().unwrap()
    };
    assert!(kv_status(Some(&tls)).status.success());
    // A membership change sent to a follower is forwarded to the leader
    // over mutual TLS as the follower, and judged there (node 9 has no
    // raft address: 400, not a 403 for the forward).
    let out = tmc()
        .args(["member", "--peer-tls-dir"])
        .arg(&tls)
        .args(["add", "--id", "9", "--server"])
        .arg(format!("127.0.0.1:{}", shard.kv_port(follower)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("no raft address"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!kv_status(None).status.success());
    assert!(!kv_status(Some(foreign.path())).status.success());
    assert!(!kv_status(Some(&foreign.path().join("nodes").join("1")))
        .status
        .success());
}

#[test]
fn peer_material_is_reloaded_when_it_changes_and_bad_material_is_refused() {
    let a = foreign_material();
    let b = foreign_material();
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path| {
        for f in ["peer-ca.crt", "peer.crt", "peer.key"] {
            std::fs::copy(from.join("nodes/1").join(f), dir.path().join(f)).unwrap();
        }
    };
    copy(a.path());
    let tls = tmc::raft::tls::PeerTls::load(dir.path()).unwrap();
    assert_eq!(tls.identity(), tmc::raft::tls::PeerId::Node(1));
    assert_eq!(tls.reload_if_changed(), Ok(false));
    copy(b.path());
    assert_eq!(tls.reload_if_changed(), Ok(true));
    // A key that does not parse: an error naming the file, old material
    // stays in force.
    std::fs::write(dir.path().join("peer.key"), "not a key").unwrap();
    let e = tls.reload_if_changed().unwrap_err();
    assert!(e.contains("peer.key"), "{e}");
    // A missing CA at start: a clear error.
    std::fs::remove_file(dir.path().join("peer-ca.crt")).unwrap();
    let e = tmc::raft::tls::PeerTls::load(dir.path()).unwrap_err();
    assert!(e.contains("peer-ca.crt"), "{e}");
}

/// `tmc certs --nodes`: two CAs; each replica's directory holds its own
/// certificate, naming it, and no key of either CA; a replica's
/// certificate is no user at the API, a user's is no replica; more nodes
/// can be added later; `tmc serve` refuses another node's directory and
/// the old single-CA layout.
#[test]
fn certs_write_a_peer_ca_and_one_directory_per_replica_without_ca_keys() {
    use tmc::api::tls::TlsFiles;
    let d = foreign_material();
    let files = TlsFiles::new(d.path());
    let pem = |p: &Path| CertificateDer::from_pem_file(p).unwrap().to_vec();
    assert_ne!(pem(&files.ca_cert()), pem(&files.peer_ca_cert()));
    for id in 1..=3u64 {
        let node = files.node_dir(id);
        let mut names: Vec<String> = std::fs::read_dir(&node)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ca.crt",
                "front-proxy-ca.crt",
                "peer-ca.crt",
                "peer.crt",
                "peer.key",
                "server.crt",
                "server.key",
                "shard.crt",
                "shard.key",
                "tokens.csv"
            ],
            "node {id}"
        );
        let tls = tmc::raft::tls::PeerTls::load(&node).unwrap();
        assert_eq!(tls.identity(), tmc::raft::tls::PeerId::Node(id));
    }
    let op = tmc::raft::tls::PeerTls::load(d.path()).unwrap();
    assert_eq!(op.identity(), tmc::raft::tls::PeerId::Operator);
    // A replica's certificate at the API: not a user.
    let api = tmc::api::tls::cert_auth(&files).unwrap();
    for cert in [files.node_dir(1).join("peer.crt"), files.peer_cert()] {
        let r = api.authenticate(&[CertificateDer::from_pem_file(&cert).unwrap()]);
        assert_eq!(r.unwrap_err().code, 401, "{}", cert.display());
    }
    // The shard identity in each replica's directory: a user of the
    // shards' group, named after the shard (`tmc certs --shard`, default
    // root), and nothing more.
    let shard_user = api
        .authenticate(&[
            CertificateDer::from_pem_file(files.node_dir(1).join("shard.crt")).unwrap(),
        ])
        .unwrap();
    assert_eq!(shard_user.name, "system:tmc:shard:root");
    assert!(
        shard_user.in_group(tmc::authz::SHARDS_GROUP),
        "{shard_user:?}"
    );
    assert!(!shard_user.is_master(), "{shard_user:?}");
    // More nodes later; what exists is kept.
    let before = std::fs::read(files.node_dir(1).join("peer.crt")).unwrap();
    let out = tmc()
        .args(["certs", "--nodes", "1,4", "--dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(files.node_dir(1).join("peer.crt")).unwrap(),
        before
    );
    let four = tmc::raft::tls::PeerTls::load(&files.node_dir(4)).unwrap();
    assert_eq!(four.identity(), tmc::raft::tls::PeerId::Node(4));

    // tmc serve with another node's directory, or an old layout: refused
    // with a clear message, before it serves anything.
    let data = d.path().join("data");
    let serve = |peer_dir: &Path| {
        tmc()
            .args(["serve", "--node-id", "2", "--peers", "2=127.0.0.1:1"])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--peer-tls-dir")
            .arg(peer_dir)
            .output()
            .unwrap()
    };
    let out = serve(&files.node_dir(1));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node 1") && err.contains("node 2"), "{err}");
    let old = d.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["ca.crt", "peer.crt", "peer.key"] {
        std::fs::copy(files.node_dir(2).join(f), old.join(f)).unwrap();
    }
    let out = serve(&old);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("peer-ca.crt") && err.contains("old layout"),
        "{err}"
    );
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
    let shard = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    // Node 1 serves from its own directory.
    let tls = shard.node_tls_dir(1);
    let other = foreign_material();
    let cas = [tls.join("ca.crt"), other.path().join("ca.crt")];
    let cas: Vec<&Path> = cas.iter().map(|p| p.as_path()).collect();
    let pem_der = |p: &Path| CertificateDer::from_pem_file(p).unwrap().to_vec();
    let port = shard.api_port(1);
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
    let (raft, kv) = (tmc::testcluster::free_port(), tmc::testcluster::free_port());
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
    let mut shard =
        TestCluster::start_with(&["--no-controllers", "--log-compact-threshold", "20"], "");
    let (behind, _) = shard.followers();
    let leader = shard.leader();
    shard.kill(behind);
    let tls = shard.tls_dir();
    let ports: Vec<String> = shard.ids().iter().map(|&id| shard.kv_addr(id)).collect();
    let kv = |id: u64, args: &[&str]| {
        tmc()
            .arg("kv")
            .arg("--peer-tls-dir")
            .arg(&tls)
            .args(["--endpoint", &ports[(id - 1) as usize]])
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
    shard.spawn(behind).unwrap();
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

// --- peer identities, frame checks, readiness, priorities (issue 13) ---

fn message(
    ty: raft::eraftpb::MessageType,
    (from, to): (u64, u64),
    term: u64,
) -> raft::eraftpb::Message {
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(ty);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

fn frame(m: &raft::eraftpb::Message) -> Vec<u8> {
    tmc::raft::wire::encode(m).unwrap()
}

fn occurrences(shard: &TestCluster, id: u64, needle: &str) -> usize {
    std::fs::read_to_string(shard.log_path(id))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Sends `frames` to node `to`'s raft port with the certificate `cert`,
/// right after the handshake, until node `to` logs `needle` once more (a
/// node's third connection closes its oldest, so a reconnecting replica
/// could close this one before its frames are read: then they are sent
/// again).
async fn attack_raft(shard: &TestCluster, to: u64, cert: &Pem, frames: &[Vec<u8>], needle: &str) {
    let cfg = client_with(&shard.tls_dir().join("peer-ca.crt"), Some(cert));
    let port = shard.raft_port(to);
    for _ in 0..20 {
        let seen = occurrences(shard, to, needle);
        let mut s = handshake(port, cfg.clone(), &format!("tmc-peer-{to}"))
            .await
            .unwrap();
        let _ = s.write_all(&shard.peer_hello(to)).await;
        let _ = s.write_all(&frames.concat()).await;
        let _ = s.flush().await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while occurrences(shard, to, needle) == seen && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if occurrences(shard, to, needle) > seen {
            return;
        }
    }
    panic!("node {to} never logged {needle:?}");
}

/// (term, leader, voters) of every node, and its pid.
fn snapshot_of(shard: &mut TestCluster) -> Vec<(u64, u64, String, u32)> {
    (1..=3)
        .map(|id| {
            let s = shard.raft_status(id).expect("status");
            (
                s["term"].as_u64().unwrap(),
                s["leader"].as_u64().unwrap_or(0),
                s["voters"].to_string(),
                shard.pid(id).expect("running"),
            )
        })
        .collect()
}

/// Attacks on the raft and internal ports of a three-node shard over
/// mutual TLS: a user's certificate (even one named like a replica, in
/// `system:masters`), a replica's certificate claiming to be another
/// replica, and well-formed frames raft-rs would panic on (a heartbeat that
/// commits past the log, and others). Each is refused and logged; no term,
/// leader or membership changes, no replica restarts, nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_peer_ports_are_refused_logged_and_change_nothing() {
    use raft::eraftpb::MessageType::*;
    let mut shard = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let leader = shard.leader();
    let (stolen, claimed) = shard.followers();
    let before = snapshot_of(&mut shard);
    let tls = shard.tls_dir();
    let peer_ca = tls.join("peer-ca.crt");
    let files = tmc::api::tls::TlsFiles::new(&tls);

    // 1. A user's certificate of the API's CA, named like a replica and in
    // system:masters: no handshake on any peer port.
    let user = tmc::api::tls::issue_client_cert(
        &files,
        &format!("tmc-peer-{stolen}"),
        &["system:masters".to_string()],
        None,
    )
    .unwrap();
    let user = Pem {
        cert: user.cert_pem,
        key: user.key_pem,
    };
    for id in 1..=3u64 {
        let r = connect(
            shard.raft_port(id),
            client_with(&peer_ca, Some(&user)),
            &format!("tmc-peer-{id}"),
        )
        .await;
        assert!(
            r.is_err(),
            "node {id}'s raft port took a user's certificate"
        );
        let r = exchange(shard.kv_port(id), client_with(&peer_ca, Some(&user))).await;
        assert!(
            r.is_err(),
            "node {id}'s internal port took a user's certificate: {r:?}"
        );
        for needle in [
            "refused a peer connection: TLS handshake failed",
            "refused an internal connection: TLS handshake failed",
        ] {
            let deadline = Instant::now() + Duration::from_secs(10);
            while occurrences(&shard, id, needle) == 0 {
                assert!(
                    Instant::now() < deadline,
                    "node {id} did not log {needle:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // 2. Replica `stolen`'s certificate claiming to be replica `claimed`,
    // leader of a new term: refused on the raft ports of the others, the
    // connection closed ...
    let cert = Pem::peer(&shard.node_tls_dir(stolen));
    let term = before[0].0;
    for to in [leader, claimed] {
        let mut hb = message(MsgHeartbeat, (claimed, to), term + 1);
        hb.commit = 0;
        let needle =
            format!("claiming to be from node {claimed} on the connection of node {stolen}");
        attack_raft(&shard, to, &cert, &[frame(&hb)], &needle).await;
        let log = std::fs::read_to_string(shard.log_path(to)).unwrap();
        assert!(log.contains("refused a raft message; closing the connection"));
    }
    // A replica's certificate with the hello of another cluster (a shard
    // restored from a backup of this one): refused before any frame is
    // read, and the heartbeat of a newer term behind it changes nothing.
    {
        let cfg = client_with(&shard.tls_dir().join("peer-ca.crt"), Some(&cert));
        let seen = occurrences(&shard, leader, "belongs to cluster");
        let mut s = handshake(shard.raft_port(leader), cfg, &format!("tmc-peer-{leader}"))
            .await
            .unwrap();
        let mut foreign = shard.peer_hello(leader);
        foreign[11] ^= 1;
        let _ = s.write_all(&foreign).await;
        let _ = s
            .write_all(&frame(&message(MsgHeartbeat, (stolen, leader), term + 5)))
            .await;
        let _ = s.flush().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while occurrences(&shard, leader, "belongs to cluster") == seen {
            assert!(
                Instant::now() < deadline,
                "no refusal of a foreign cluster logged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // ... and on the internal ports: a forwarded write or membership
    // change that names another replica, a forwarded write naming nobody,
    // and the operator's certificate forwarding a write.
    let key = tmc::store::ObjectKey::namespaced(
        tmc::store::GroupResource::new("", "configmaps").unwrap(),
        tmc::store::Workspace::parse("root:attack").unwrap(),
        "default",
        "x",
    )
    .unwrap();
    let txn = tmc::store::Txn::new(vec![tmc::store::TxnOp::put_json(
        key,
        b"{}".to_vec(),
        tmc::store::Expectation::Any,
    )]);
    let body = serde_json::to_vec(&txn).unwrap();
    let stolen_cfg = client_with(&peer_ca, Some(&cert));
    let op_cfg = client(&peer_ca, Some(&tls));
    for id in 1..=3u64 {
        let port = shard.kv_port(id);
        for (cfg, head, b) in [
            (
                &stolen_cfg,
                format!(
                    "POST /internal/txn HTTP/1.1\r\nx-tmc-no-forward: 1\r\nx-tmc-from: {claimed}"
                ),
                &body[..],
            ),
            (
                &stolen_cfg,
                format!("POST /members/7 HTTP/1.1\r\nx-tmc-no-forward: 1\r\nx-tmc-from: {claimed}"),
                &b""[..],
            ),
            (
                &stolen_cfg,
                "POST /internal/txn HTTP/1.1".to_string(),
                &body[..],
            ),
            (
                &op_cfg,
                "POST /internal/txn HTTP/1.1\r\nx-tmc-from: 1".to_string(),
                &body[..],
            ),
        ] {
            let answer = request(port, cfg.clone(), &head, b).await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 403"),
                "node {id}, {head}: {answer}"
            );
        }
        assert!(occurrences(&shard, id, "refused an internal request") >= 4);
    }

    // 3. Well-formed frames from the stolen replica's own identity that
    // raft-rs 0.7 panics on: refused before raft sees them.
    for to in [leader, claimed] {
        let st = shard.raft_status(to).unwrap();
        let (term, commit) = (st["term"].as_u64().unwrap(), st["commit"].as_u64().unwrap());
        let past = commit + 1_000_000;
        let mut hb = message(MsgHeartbeat, (stolen, to), term);
        hb.commit = past;
        let mut ri = message(MsgReadIndexResp, (stolen, to), 0);
        ri.index = past;
        ri.mut_entries().push(raft::eraftpb::Entry::default());
        let mut gap = message(MsgAppend, (stolen, to), term);
        gap.index = commit;
        gap.log_term = term;
        gap.commit = past;
        gap.mut_entries().push(raft::eraftpb::Entry {
            index: commit + 5,
            term,
            ..Default::default()
        });
        let mut empty_read = message(MsgReadIndex, (stolen, to), 0);
        empty_read.commit = 1;
        let mut vote = message(MsgRequestVote, (stolen, to), 0);
        vote.index = commit;
        let frames = [
            frame(&gap),
            frame(&ri),
            frame(&empty_read),
            frame(&vote),
            frame(&message(MsgTransferLeader, (stolen, to), term)),
            frame(&message(MsgHup, (stolen, to), 0)),
            frame(&hb),
        ];
        attack_raft(&shard, to, &cert, &frames, "a heartbeat committing").await;
        let log = std::fs::read_to_string(shard.log_path(to)).unwrap();
        for reason in [
            "entry 0 of an append after index",
            "MsgReadIndexResp without a term",
            "MsgReadIndex with 0 entries instead of one",
            "MsgRequestVote without a term",
            "MsgTransferLeader is not sent between replicas",
            "MsgHup is not sent between replicas",
        ] {
            assert!(log.contains(reason), "node {to} did not log {reason:?}");
        }
    }

    // Nothing changed; nobody restarted or panicked; nothing was written.
    let after = snapshot_of(&mut shard);
    assert_eq!(before, after, "(term, leader, voters, pid) of each node");
    for id in 1..=3 {
        let log = std::fs::read_to_string(shard.log_path(id)).unwrap();
        assert!(!log.contains("panicked"), "node {id} panicked");
    }
    let out = tmc()
        .args(["kv", "--peer-tls-dir"])
        .arg(&tls)
        .args(["--endpoint", &format!("127.0.0.1:{}", shard.kv_port(1))])
        .args(["get", "root:attack/default/x"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the attacker's write is there");
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    // And the shard still takes writes.
    let (ok, _, err) = kubectl_at(
        &shard.kubeconfig(claimed, "root"),
        &[
            "create",
            "configmap",
            "after-the-attacks",
            "--from-literal=a=b",
        ],
    );
    assert!(ok, "{err}");
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/readyz` of a replica is ok while it knows a leader and has applied
/// what it knows is committed; a follower cut off from both its peers
/// stops being ready after an election timeout, and is ready again once
/// they are back.
#[test]
fn a_follower_cut_off_from_its_peers_stops_being_ready() {
    let shard = TestCluster::start();
    for id in 1..=3 {
        wait_for(&format!("node {id} ready"), Duration::from_secs(30), || {
            shard.readyz(id).is_some_and(|(c, _)| c == 200)
        });
    }
    let (f, g) = shard.followers();
    let l = shard.leader();
    shard.pause(l);
    shard.pause(g);
    let mut last = None;
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            &format!("node {f} to stop being ready"),
            Duration::from_secs(30),
            || {
                last = shard.readyz(f);
                last.as_ref().is_some_and(|(c, _)| *c == 503)
            },
        )
    }));
    shard.resume(l);
    shard.resume(g);
    assert!(cut.is_ok(), "node {f} cut off stayed ready: {last:?}");
    let (_, body) = last.unwrap();
    assert!(body.contains("not ready"), "{body}");
    wait_for(
        &format!("node {f} ready again"),
        Duration::from_secs(60),
        || shard.readyz(f).is_some_and(|(c, _)| c == 200),
    );
}

/// 60 s of a flood of expensive API requests — lists of a few MiB and
/// patches, from many concurrent connections to every replica — and no
/// election: the term and the leader stay, no replica becomes a
/// (pre-)candidate. The raft transport and event loop never wait behind
/// API work (they have threads of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_api_requests_causes_no_election() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    let mut shard = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let leader = shard.leader();
    let client = shard.client(leader, "root").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // 400 ConfigMaps of 8 KiB: every list is about 3.5 MB of JSON.
    let blob = "x".repeat(8 << 10);
    for i in 0..400 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("flood-{i}"));
        cm.data = Some([("blob".to_string(), blob.clone())].into());
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let before = snapshot_of(&mut shard);
    let elections = |shard: &TestCluster| -> usize {
        (1..=3)
            .map(|id| {
                occurrences(shard, id, "became pre-candidate")
                    + occurrences(shard, id, "became candidate")
            })
            .sum()
    };
    let elections_before = elections(&shard);
    let mut clients = Vec::new();
    for id in 1..=3 {
        clients.push(Api::<ConfigMap>::namespaced(
            shard.client(id, "root").await,
            "default",
        ));
    }
    let until = Instant::now() + Duration::from_secs(60);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..48usize {
        let api = clients[t % 3].clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while Instant::now() < until {
                i += 1;
                let r = if i % 4 == 0 {
                    let patch = serde_json::json!({"data": {"n": i.to_string()}});
                    api.patch(
                        &format!("flood-{}", i % 400),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map(|_| ())
                } else {
                    api.list(&ListParams::default()).await.map(|_| ())
                };
                if r.is_ok() {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let done = done.load(std::sync::atomic::Ordering::Relaxed);
    assert!(done > 100, "the flood did not flow: {done} requests");
    let after = snapshot_of(&mut shard);
    assert_eq!(
        before, after,
        "(term, leader, voters, pid) of each node changed under the flood ({done} requests)"
    );
    assert_eq!(
        elections(&shard),
        elections_before,
        "a replica started an election under the flood"
    );
}
