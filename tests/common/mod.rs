//! Helpers shared by integration tests (`mod common;` in a test file).

pub mod faultnet;
pub mod replicas;
pub mod shard;
pub mod testenv;

/// A TCP port for a child process to listen on: below the kernel's
/// ephemeral range (32768-60999), so that no outgoing connection can be
/// handed the port between this check and the child's bind, and never the
/// same twice in one test binary (tests run in parallel threads). Each
/// binary starts at its own offset (from its pid) to stay clear of ports
/// still held by a previous binary's children.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 24;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 12_000) as u16;
        let port = if port >= 32_000 { port - 12_000 } else { port };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
