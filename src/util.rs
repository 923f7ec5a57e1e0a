//! Small process helpers shared by the CLI and the benchmarks.

use std::path::Path;

/// The error of the CLI and of the wiring of a replica: any error, with
/// its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The innermost error's message (hyper's outer ones say only "client
/// error (Connect)"), as the socket or TLS layer put it.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Peak resident set size of this process in bytes (`VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size of this process in bytes (`VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Current resident set size of process `pid` in bytes (`VmRSS`), if known.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    status_kib("/proc/self/status", field)
}

fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Total size in bytes of the files under `dir`.
pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Writes a new file only its owner can read (keys, tokens), fsynced; an
/// existing file is an error.
pub fn write_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// A directory that was absent or empty when claimed, so that what goes
/// into it can be taken back whole ([`EmptyDir::discard`]): a restore, a
/// backup set.
pub struct EmptyDir {
    path: std::path::PathBuf,
    created: bool,
}

impl EmptyDir {
    /// Claims `dir`, creating it if absent; one that holds anything is an
    /// error naming the first entry and `rule` (what may go where).
    pub fn claim(dir: &Path, rule: &str) -> Result<EmptyDir, String> {
        let what = |e: std::io::Error| format!("{}: {e}", dir.display());
        let created = !dir.exists();
        if !created {
            if let Some(first) = std::fs::read_dir(dir).map_err(what)?.next() {
                return Err(format!(
                    "{} is not empty (it holds {:?}): {rule}",
                    dir.display(),
                    first.map_err(what)?.file_name()
                ));
            }
        }
        std::fs::create_dir_all(dir).map_err(what)?;
        Ok(EmptyDir {
            path: dir.to_path_buf(),
            created,
        })
    }

    /// Removes everything written into it since the claim, and the
    /// directory itself if the claim created it.
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
            return;
        }
        for e in std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// A value built from files (certificates, keys), rebuilt when their
/// contents change. New users get the new value; holders of the old one
/// keep it. A rebuild that fails leaves the old value in force.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<std::path::PathBuf>,
    build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    current: std::sync::RwLock<(Vec<u8>, std::sync::Arc<T>)>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first value; `what` names it in logs, `paths` are the
    /// files whose contents decide when to rebuild.
    pub fn new(
        what: &'static str,
        paths: Vec<std::path::PathBuf>,
        build: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<std::sync::Arc<Self>, String> {
        let source = Self::read(&paths)?;
        let value = build()?;
        Ok(std::sync::Arc::new(Reloading {
            what,
            paths,
            build: Box::new(build),
            current: std::sync::RwLock::new((source, std::sync::Arc::new(value))),
        }))
    }

    fn read(paths: &[std::path::PathBuf]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for p in paths {
            out.extend(std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?);
            out.push(0);
        }
        Ok(out)
    }

    /// The value in force.
    pub fn get(&self) -> std::sync::Arc<T> {
        self.current.read().expect("reload lock").1.clone()
    }

    /// Rebuilds if the files changed; `Ok(true)` when a new value is in
    /// force.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let source = Self::read(&self.paths)?;
        if self.current.read().expect("reload lock").0 == source {
            return Ok(false);
        }
        let value = (self.build)()?;
        *self.current.write().expect("reload lock") = (source, std::sync::Arc::new(value));
        Ok(true)
    }

    /// Checks the files every `every` while someone else holds `self`
    /// (needs a tokio runtime).
    pub fn watch(self: &std::sync::Arc<Self>, every: std::time::Duration) {
        let weak = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(r) = weak.upgrade() else { return };
                match r.reload_if_changed() {
                    Ok(true) => tracing::info!(what = r.what, "reloaded from its files"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(what = r.what, error = %e, "not reloaded; the old stays in force")
                    }
                }
            }
        });
    }
}
