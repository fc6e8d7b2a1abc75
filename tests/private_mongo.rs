//! A MongoDB-wire server (secantusd-rs) of a test's own, on a free loopback port, that the
//! test can kill and start again on the same port and storage: for outage tests that must
//! not disturb the shared test server.

use std::path::PathBuf;
use std::time::Duration;

/// The server; killed (and its storage removed) on drop.
pub(crate) struct PrivateMongo {
    bin: String,
    port: u16,
    storage: PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateMongo {
    /// Starts `bin` on a free port with fresh storage.
    pub(crate) fn start(bin: &str) -> PrivateMongo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage =
            std::env::temp_dir().join(format!("tessera-mongo-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&storage).unwrap();
        let mut server = PrivateMongo {
            bin: bin.to_owned(),
            port,
            storage,
            child: None,
        };
        server.restart();
        server
    }

    /// Its URI.
    pub(crate) fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Kills it at once (SIGKILL): an outage.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage; waits until it accepts connections.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.storage)
            .args(["--cache-size", "64M"])
            // This server is SIGKILLed: honour j:true (journaled writes) as mongod does,
            // or acknowledged writes are lost with it.
            .arg("--sync-on-commit")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the MongoDB-wire server starts");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the MongoDB-wire server did not listen on {}", self.port);
    }
}

/// For a bench: MongoDB at `TESSERA_TEST_MONGO_URI`, or a private server when
/// `TESSERA_TEST_MONGO_BIN` names one (kept running while the second half is held); or
/// `None`, having printed that `bench`'s MongoDB half is skipped.
#[allow(dead_code)] // The benches' only.
pub(crate) fn for_bench(bench: &str) -> Option<(String, Option<PrivateMongo>)> {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    match (env("TESSERA_TEST_MONGO_URI"), env("TESSERA_TEST_MONGO_BIN")) {
        (Some(uri), _) => Some((uri, None)),
        (None, Some(bin)) => {
            let server = PrivateMongo::start(&bin);
            Some((server.uri(), Some(server)))
        }
        (None, None) => {
            println!(
                "{bench}/mongodb: skipped: neither TESSERA_TEST_MONGO_URI nor TESSERA_TEST_MONGO_BIN is set (source scripts/services.sh; services_start)"
            );
            None
        }
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}
