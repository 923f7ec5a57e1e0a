//! `tmc dev` as a user runs it: a real process on loopback that opens its
//! store and answers the health endpoints; a second one on the same data
//! directory is refused with a clear error.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tmc"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches("/readyz")
        .to_string();
    (Killed(child), url)
}

#[tokio::test]
async fn dev_serves_health_and_guards_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tmc");
    let (_dev, url) = start(&data);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for path in ["/livez", "/readyz"] {
        let resp = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    let resp = client.get(format!("{url}/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        data.join("data").join("CURRENT").exists(),
        "RocksDB lives under the data dir"
    );

    // A second node on the same data directory must not open it.
    let out = Command::new(env!("CARGO_BIN_EXE_tmc"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lock"),
        "the error says the store is locked: {stderr}"
    );
}
