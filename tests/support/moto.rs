//! An S3-protocol server of a test's own: moto's `moto_server` on a free
//! loopback port, with one bucket. `scripts/test` installs `moto[server]`
//! when missing and exports `KPIFLOW_MOTO` (the `moto_server` command).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server; stopped on drop.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts one with `bucket` created. Fails (never skips) without moto.
    pub fn start(bucket: &str) -> MotoServer {
        let moto = std::env::var("KPIFLOW_MOTO").unwrap_or_else(|_| {
            panic!(
                "KPIFLOW_MOTO is not set: this test needs an S3-protocol server. Run the tests \
                 with scripts/test (it installs moto), or `pip install 'moto[server]'` and export \
                 KPIFLOW_MOTO=moto_server"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {moto}: {e}"));
        let server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // moto does not check signatures: a bare PUT creates the bucket.
            match request(port, &format!("PUT /{bucket} HTTP/1.1")) {
                Ok(status) if status.contains(" 200") => return server,
                Ok(status) => panic!("moto refused to create bucket {bucket}: {status}"),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("moto did not answer on port {port} within 30 s: {e}"),
            }
        }
    }

    /// The variables that point object_store's S3 client (and so
    /// `kpiflow run`) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

fn request(port: u16, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{line}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
