//! Bad input at start, through the real binary: a data location that
//! cannot be written, an S3 endpoint that refuses, never answers or turns
//! the credentials down, a data location claimed by another pipeline, and
//! damaged checkpoint manifests. Each gives its exit code (1: a runtime
//! failure) and one line on stderr naming the problem, well within a
//! bound (a guard against hangs, not a speed test). Nothing here needs a
//! broker: `kpiflow run` checks, claims and recovers its data location
//! before it starts the Kafka source, so `--brokers 127.0.0.1:1` is never
//! contacted. Invalid configurations are `tests/config.rs`'s.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// No case may take longer than this (the S3 ones have a tighter bound).
const HANG_GUARD: Duration = Duration::from_secs(60);
/// The S3 request timeout the S3 cases set (`storage.request_timeout`).
const REQUEST_TIMEOUT: &str = "3s";
/// The S3 cases' bound: the location check gives up after twice the
/// request timeout; the rest is slack for a loaded machine.
const S3_BOUND: Duration = Duration::from_secs(30);
/// A broker address nothing listens on: these runs fail before Kafka.
const NO_BROKER: &str = "127.0.0.1:1";
const DEMO_PIPELINE: &str = "kpiflow-demo";

/// What a finished run printed, and how long it took.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    /// The lines of stderr that are not blank.
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Exit `code`, stderr exactly one `error: ` line containing every one
    /// of `needles`, within `bound`. Returns the line.
    fn one_line_error(&self, code: i32, needles: &[&str], bound: Duration) -> &str {
        assert!(
            self.took < bound,
            "took {:?} (bound {bound:?}): {self:?}",
            self.took
        );
        assert_eq!(self.code, Some(code), "{self:?}");
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "not one line on stderr:\n{}", self.stderr);
        let line = lines[0];
        assert!(line.starts_with("error: "), "{line}");
        for needle in needles {
            assert!(line.contains(needle), "{needle:?} missing in: {line}");
        }
        assert_said_once(line);
        line
    }
}

/// No part of an error (between `: `) of 20 characters or more comes
/// twice: a cause printed by its wrapper and again by the error chain.
fn assert_said_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 20).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[..i].contains(part), "said twice ({part:?}): {line}");
    }
}

/// Runs the binary as a user would: none of the caller's `KPIFLOW_*`,
/// `AWS_*` or `RUST_LOG` variables (the default log level), `env` added,
/// output to files, killed after the hang guard.
fn kpiflow(args: &[&str], env: &[(&str, &str)], scratch: &Path) -> Ran {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) = (
        scratch.join(format!("run-{run}.out")),
        scratch.join(format!("run-{run}.err")),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpiflow"));
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("KPIFLOW_")
            || name_text.starts_with("AWS_")
            || name_text == "RUST_LOG"
        {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let started = Instant::now();
    let mut child = command.spawn().expect("start kpiflow");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kpiflow {args:?} hung: killed after {HANG_GUARD:?}; stderr so far:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ran = Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        took: started.elapsed(),
    };
    eprintln!(
        "kpiflow {}: exit {:?} in {:?}; stderr:\n{}",
        args.join(" "),
        ran.code,
        ran.took,
        ran.stderr
    );
    ran
}

fn run_on(data: &str, pipeline: &str, env: &[(&str, &str)], scratch: &Path) -> Ran {
    kpiflow(
        &[
            "run",
            "--brokers",
            NO_BROKER,
            "--data",
            data,
            "--pipeline-id",
            pipeline,
        ],
        env,
        scratch,
    )
}

#[test]
fn a_data_directory_under_a_file_is_refused_at_once() {
    // Permissions do not stop root; a path through a regular file stops everyone.
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("file.txt");
    std::fs::write(&file, "not a directory").unwrap();
    let data = file.join("data");
    let data = data.to_str().unwrap();
    let ran = run_on(data, "a", &[], scratch.path());
    ran.one_line_error(
        1,
        &[
            &format!("data location `{data}`"),
            "cannot create the directory",
            "Not a directory",
        ],
        HANG_GUARD,
    );
}

#[test]
fn a_directory_nobody_can_write_to_is_refused_by_the_write_check() {
    // /proc/self exists (it is the process's own folder), and not even root
    // can create a folder in it: the write check at start finds that out.
    let scratch = tempfile::tempdir().unwrap();
    let ran = run_on("/proc/self", "a", &[], scratch.path());
    ran.one_line_error(
        1,
        &["data location `/proc/self`", "cannot write there"],
        HANG_GUARD,
    );
}

/// A loopback endpoint standing in for S3: answers every request with
/// `response`, or, with `None`, accepts connections and never answers.
struct FakeEndpoint {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeEndpoint {
    fn start(response: Option<String>) -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => match &response {
                            Some(response) => {
                                let response = response.clone();
                                std::thread::spawn(move || answer(stream, &response));
                            }
                            None => held.push(stream),
                        },
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        FakeEndpoint {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (headers, then the body by its length) and answers.
fn answer(mut stream: TcpStream, response: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let _ = stream.write_all(response.as_bytes());
}

/// S3's answer to an unknown access key (its body as S3 sends it: the XML
/// declaration on a line of its own).
fn invalid_access_key_response() -> String {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
                <Message>The AWS Access Key Id you provided does not exist in our records.</Message>\
                <AWSAccessKeyId>AKIAKPIFLOWTEST</AWSAccessKeyId><RequestId>KPIFLOWTEST</RequestId></Error>";
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nx-amz-request-id: KPIFLOWTEST\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const S3_DATA: &str = "s3://kpiflow-test/prefix";

/// `kpiflow run` on [`S3_DATA`] through `endpoint` with bogus credentials.
fn run_on_s3(endpoint: &str, scratch: &Path) -> Ran {
    let env = [
        ("KPIFLOW_STORAGE__S3__ENDPOINT", endpoint),
        ("KPIFLOW_STORAGE__S3__ALLOW_HTTP", "true"),
        ("KPIFLOW_STORAGE__S3__REGION", "us-east-1"),
        ("KPIFLOW_STORAGE__S3__ACCESS_KEY_ID", "AKIAKPIFLOWTEST"),
        ("KPIFLOW_STORAGE__S3__SECRET_ACCESS_KEY", "not-a-secret"),
        ("KPIFLOW_STORAGE__REQUEST_TIMEOUT", REQUEST_TIMEOUT),
    ];
    run_on(S3_DATA, "a", &env, scratch)
}

/// What every S3 failure says: the location, that it cannot be written,
/// and not reqwest's "builder error" (a request that was never sent).
fn s3_error<'a>(ran: &'a Ran, needles: &[&str]) -> &'a str {
    let mut all = vec![
        format!("data location `{S3_DATA}`"),
        "cannot write there".to_owned(),
    ];
    all.extend(needles.iter().map(|n| (*n).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let line = ran.one_line_error(1, &all, S3_BOUND);
    assert!(
        !line.contains("builder error"),
        "the request was never sent (allow_http lost?): {line}"
    );
    line
}

#[test]
fn an_s3_endpoint_that_refuses_connections_is_reported_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let ran = run_on_s3(&endpoint, scratch.path());
    s3_error(&ran, &[&endpoint]);
}

#[test]
fn an_s3_endpoint_that_never_answers_fails_within_the_request_timeout() {
    let scratch = tempfile::tempdir().unwrap();
    let silent = FakeEndpoint::start(None);
    let ran = run_on_s3(&silent.url, scratch.path());
    let line = s3_error(&ran, &[]);
    let lower = line.to_lowercase();
    assert!(
        lower.contains("timed out")
            || lower.contains("timeout")
            || lower.contains("did not finish within"),
        "the error does not say the endpoint did not answer in time: {line}"
    );
}

#[test]
fn bad_s3_credentials_are_reported_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let s3 = FakeEndpoint::start(Some(invalid_access_key_response()));
    // The stand-in answers as S3 does.
    let mut probe = TcpStream::connect(s3.url.trim_start_matches("http://")).unwrap();
    probe
        .write_all(b"PUT /kpiflow-test/x HTTP/1.1\r\nHost: s3\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let mut answered = String::new();
    probe.read_to_string(&mut answered).unwrap();
    assert!(
        answered.starts_with("HTTP/1.1 403 Forbidden\r\n")
            && answered.contains("InvalidAccessKeyId"),
        "{answered}"
    );
    let ran = run_on_s3(&s3.url, scratch.path());
    s3_error(&ran, &["403", "InvalidAccessKeyId"]);
}

#[test]
fn a_data_directory_of_another_pipeline_is_refused_and_left_alone() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    std::fs::create_dir_all(data.join("_kpiflow")).unwrap();
    // The marker `DataLocation::claim` writes.
    std::fs::write(data.join("_kpiflow/pipeline"), "other").unwrap();
    let data_text = data.to_str().unwrap();
    let ran = run_on(data_text, "a", &[], scratch.path());
    let line = ran.one_line_error(1, &[], HANG_GUARD);
    assert_eq!(
        line,
        format!(
            "error: data location `{data_text}` belongs to pipeline `other`, not `a`: \
             start with --pipeline-id other, or give this pipeline another --data"
        )
    );
    assert_eq!(
        std::fs::read_to_string(data.join("_kpiflow/pipeline")).unwrap(),
        "other"
    );
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["_kpiflow"], "the refused run wrote into {data_text}");
}

/// The demo's checkpoints, oldest first.
fn checkpoints(data: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("checkpoints").join(DEMO_PIPELINE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

fn epoch_of(dir: &Path) -> u64 {
    dir.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Cuts a manifest in the middle, as a torn write would leave it.
fn truncate(manifest: &Path) {
    let text = std::fs::read(manifest).unwrap();
    std::fs::write(manifest, &text[..text.len() / 2]).unwrap();
}

/// The data of one `kpiflow demo` run (≥ 2 checkpoints), shared by the
/// manifest tests, which damage copies of it. It lives in the target's
/// temporary folder under this process's id; those of finished runs are
/// removed.
fn demo_data() -> &'static Path {
    static DATA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("bad_start-demo-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = root.join(format!("bad_start-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let demo = kpiflow(
            &[
                "demo",
                "--http",
                "127.0.0.1:0",
                "--pg",
                "off",
                "--duration",
                "25s",
                "--data",
                data.to_str().unwrap(),
            ],
            &[],
            &dir,
        );
        assert_eq!(demo.code, Some(0), "{demo:?}");
        let epochs = checkpoints(&data);
        assert!(epochs.len() >= 2, "the demo left {epochs:?}");
        data
    })
}

/// A copy of the demo's data with the newest manifest torn; the newest
/// epoch and the one before.
fn with_torn_newest(scratch: &Path) -> (PathBuf, u64, u64) {
    let torn = scratch.join("torn");
    copy_dir(demo_data(), &torn);
    let epochs = checkpoints(&torn);
    let newest = epoch_of(&epochs[epochs.len() - 1]);
    let previous = epoch_of(&epochs[epochs.len() - 2]);
    truncate(&epochs[epochs.len() - 1].join("manifest.json"));
    (torn, newest, previous)
}

#[test]
fn a_damaged_newest_manifest_makes_verify_fall_back_and_say_so_on_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let (torn, newest, previous) = with_torn_newest(scratch.path());
    let ran = kpiflow(
        &["verify", "--data", torn.to_str().unwrap()],
        &[],
        scratch.path(),
    );
    assert!(ran.took < HANG_GUARD);
    let lines = ran.stderr_lines();
    assert_eq!(lines.len(), 1, "not one line on stderr:\n{}", ran.stderr);
    let line = lines[0];
    assert!(
        line.contains(&format!(
            "WARN kpiflow_storage::checkpoint: checkpoint {newest} is damaged ("
        )) && line.contains("manifest.json")
            && line.contains("not a readable manifest")
            && line.ends_with(&format!("; falling back to checkpoint {previous}")),
        "{line}"
    );
    assert!(
        ran.stdout.contains(&format!(
            "checkpoint {previous} of pipeline `{DEMO_PIPELINE}`"
        )),
        "{}",
        ran.stdout
    );
    assert_eq!(
        ran.code,
        Some(0),
        "verify after a fallback:\n{}",
        ran.stdout
    );
}

#[test]
fn a_damaged_newest_manifest_makes_run_fall_back_then_refuse_on_one_line() {
    // The tables already hold the damaged checkpoint's epoch: resuming
    // from the one before would write that epoch's rows twice.
    let scratch = tempfile::tempdir().unwrap();
    let (torn, newest, previous) = with_torn_newest(scratch.path());
    let ran = run_on(torn.to_str().unwrap(), DEMO_PIPELINE, &[], scratch.path());
    assert!(ran.took < HANG_GUARD);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let lines = ran.stderr_lines();
    assert_eq!(lines.len(), 2, "not two lines on stderr:\n{}", ran.stderr);
    assert!(
        lines[0].contains(&format!(
            "WARN kpiflow_storage::checkpoint: checkpoint {newest} is damaged ("
        )) && lines[0].ends_with(&format!("; falling back to checkpoint {previous}")),
        "{}",
        lines[0]
    );
    let error = lines[1];
    assert!(error.starts_with("error: "), "{error}");
    assert!(error.contains(&format!("holds epoch {newest}")), "{error}");
    assert_said_once(error);
    assert!(error.contains("fresh data location"), "{error}");
}

#[test]
fn every_manifest_damaged_is_a_one_line_error() {
    let scratch = tempfile::tempdir().unwrap();
    let ruined = scratch.path().join("ruined");
    copy_dir(demo_data(), &ruined);
    for dir in checkpoints(&ruined) {
        std::fs::write(dir.join("manifest.json"), "{ not json").unwrap();
    }
    let ruined = ruined.to_str().unwrap();
    let ran = kpiflow(&["verify", "--data", ruined], &[], scratch.path());
    ran.one_line_error(1, &["manifest.json", "not a readable manifest"], HANG_GUARD);
    let ran = run_on(ruined, DEMO_PIPELINE, &[], scratch.path());
    ran.one_line_error(1, &["manifest.json", "not a readable manifest"], HANG_GUARD);
}
