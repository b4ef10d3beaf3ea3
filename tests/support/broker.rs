//! A tansu broker of a test's own, for tests that need topics nobody else
//! writes to (the crash test reads every topic from the start). The binary
//! is the one `scripts/test` installed (`KPIFLOW_TANSU`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker on a free loopback port, with memory storage; stopped on drop.
pub struct OwnBroker {
    child: Child,
    pub brokers: String,
}

impl OwnBroker {
    /// Starts one. Fails (never skips) when tansu is not installed.
    pub fn start() -> OwnBroker {
        let tansu = std::env::var("KPIFLOW_TANSU").unwrap_or_else(|_| {
            panic!(
                "KPIFLOW_TANSU is not set: this test starts a tansu broker of its own. Run the \
                 tests with scripts/test (it installs tansu), or install it with `cargo install \
                 tansu --version 0.6.0 --locked --features dynostore` and export \
                 KPIFLOW_TANSU=/path/to/tansu"
            )
        });
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut child = Command::new(&tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start tansu at {tansu}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken after all: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return OwnBroker {
                        child,
                        brokers: format!("127.0.0.1:{port}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("tansu did not start on any of five free ports");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
