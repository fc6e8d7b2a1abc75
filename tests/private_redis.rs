//! A redis-server of a test's or bench's own (shared by tests/bus.rs and benches/bus.rs):
//! for what must not disturb the shared test Redis (stopping it, timing it).

use std::time::Duration;

/// A redis-server on a free loopback port, killed on drop.
pub(crate) struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts one; `None` if `redis-server` is not on PATH or does not come up in 5 s.
    pub(crate) fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(PrivateRedis { child, port });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server.
    #[allow(dead_code)] // Used by the tests, not by the bench.
    pub(crate) fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
