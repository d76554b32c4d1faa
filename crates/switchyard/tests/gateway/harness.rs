//! Starting `switchyard serve` and `switchyard mock` as real processes on
//! ephemeral loopback ports, and small helpers to talk to them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The client key every test config accepts.
pub const CLIENT_KEY: &str = "sk-client-test";
/// The provider key every test config sends upstream.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret";

/// A child process that announced `listening on ADDR`; killed when dropped.
pub struct Process {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    #[allow(
        dead_code,
        reason = "read by the reliability suite, kept alive by the tests"
    )]
    dir: Option<tempfile::TempDir>,
}

impl Process {
    /// Runs `switchyard <args>`, in `dir` when given (where the default
    /// store, `sqlite://switchyard.db`, is then made).
    fn spawn(args: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        let mut command = Command::new(binary());
        command.args(args);
        if let Some(dir) = &dir {
            command.current_dir(dir.path());
        }
        Self::start(&mut command, args, dir)
    }

    /// Runs `switchyard <args>` in `cwd` with extra environment variables.
    pub fn spawn_in(args: &[&str], cwd: &std::path::Path, envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary());
        command
            .args(args)
            .current_dir(cwd)
            .envs(envs.iter().copied());
        Self::start(&mut command, args, None)
    }

    fn start(command: &mut Command, args: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        if command.get_envs().all(|(key, _)| key != "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .env_remove("OPENAI_API_KEY")
            .env_remove("HOLYSHEEP_API_KEY")
            .env_remove("DEEPSEEK_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "switchyard {args:?} did not start: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self {
            child,
            addr,
            stderr,
            dir,
        }
    }

    /// Its process id.
    #[allow(dead_code, reason = "the reliability suite's")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The folder it runs in (a gateway's config and default store), when
    /// it has one of its own.
    #[allow(dead_code, reason = "the reliability suite's")]
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// `http://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a log line contains every one of `needles`, and returns it.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .logs()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {needles:?} in:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "process still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test: `SWITCHYARD_BIN` when set (the reliability suite
/// names the release build there), else the one cargo built for the tests.
pub fn binary() -> PathBuf {
    std::env::var_os("SWITCHYARD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_switchyard")),
        PathBuf::from,
    )
}

/// `switchyard mock --listen 127.0.0.1:0 <flags>`
pub fn mock(flags: &[&str]) -> Process {
    let mut args = vec!["mock", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    Process::spawn(&args, None)
}

/// `switchyard serve --config <yaml written to a temp dir>`
pub fn gateway(yaml: &str) -> Process {
    gateway_with(yaml, &[])
}

/// `switchyard serve --config <yaml>` with `envs` (`RUST_LOG` among them
/// replaces the tests' `info`).
#[allow(dead_code, reason = "the reliability suite's")]
pub fn gateway_with_env(yaml: &str, envs: &[(&str, &str)]) -> Process {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let args = ["serve", "--config", &path];
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir.path())
        .envs(envs.iter().copied());
    Process::start(&mut command, &args, Some(dir))
}

/// `switchyard serve --config <yaml> <extra args>`
pub fn gateway_with(yaml: &str, extra: &[&str]) -> Process {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["serve", "--config", &path];
    args.extend_from_slice(extra);
    Process::spawn(&args, Some(dir))
}

/// `switchyard serve --config <yaml>` with at most `descriptors` open
/// descriptors (soft and hard limit, set by `sh`'s `ulimit -n`).
pub fn gateway_with_descriptors(yaml: &str, descriptors: u32) -> Process {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let path = path.to_str().expect("utf-8 path");
    let script = format!("ulimit -n {descriptors} && exec \"$0\" \"$@\"");
    let binary = binary();
    let args = [
        "-c",
        &script,
        binary.to_str().expect("a UTF-8 path"),
        "serve",
        "--config",
        path,
    ];
    Process::start(
        Command::new("sh").args(args).current_dir(dir.path()),
        &args,
        Some(dir),
    )
}

/// A config in `keys` mode with model `gpt-4.1` on provider `up` → `mock-1` at `base_url`.
pub fn config(base_url: &str, timeouts: &str, server_extra: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace: 10s
{server_extra}
auth:
  mode: keys
keys:
  - name: tests
    key: {CLIENT_KEY}
providers:
  up:
    kind: openai
    base_url: {base_url}
    api_key: {UPSTREAM_KEY}
    timeouts: {{ {timeouts} }}
models:
  gpt-4.1:
    deployments:
      - {{ provider: up, model: mock-1 }}
"#
    )
}

/// A gateway in front of `mock` with the default test config.
pub fn gateway_for(mock: &Process) -> Process {
    gateway(&config(&mock.url("/v1"), "connect: 1s", ""))
}

thread_local! {
    /// The test's client: each test runs on a thread of its own, and building
    /// a client (its TLS set-up) costs far more than a request.
    static CLIENT: reqwest::Client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
}

/// An HTTP client that never retries and never waits long (one per test,
/// keeping its connections).
pub fn client() -> reqwest::Client {
    CLIENT.with(Clone::clone)
}

/// A chat request body.
pub fn chat(text: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": "gpt-4.1",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// The ids `GET /v1/models` lists for `key`, sorted.
pub async fn model_ids(gw: &Process, key: &str) -> Vec<String> {
    let response = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let list: Value = response.json().await.unwrap();
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `GET /metrics` of `gw`, as text.
pub async fn metrics(gw: &Process) -> String {
    let response = client().get(gw.url("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

/// Requests `mock` received (`/mock/stats`).
pub async fn mock_requests(mock: &Process) -> u64 {
    get_json(&mock.url("/mock/stats")).await["requests"]
        .as_u64()
        .unwrap()
}

/// Changes `mock`'s fault knobs at run time (`POST /mock/faults`).
pub async fn set_faults(mock: &Process, knobs: Value) {
    let response = client()
        .post(mock.url("/mock/faults"))
        .json(&knobs)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// POSTs JSON with the test key.
pub async fn post(gw: &Process, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(CLIENT_KEY)
        .json(body)
        .send()
        .await
        .expect("send")
}

/// POSTs a streaming chat request with `text` to `gw`.
pub async fn post_stream(gw: &Process, text: &str) -> reqwest::Response {
    post(
        gw,
        "/v1/chat/completions",
        &chat(text, serde_json::json!({"stream": true})),
    )
    .await
}

/// A streamed chat of `key` with `text` to `gpt-4.1`, asking for the usage
/// chunk, with `metadata` in the body unless it is null: its usage.
pub async fn stream_usage(gw: &Process, key: &str, text: &str, metadata: Value) -> Value {
    let mut body = serde_json::json!({
        "model": "gpt-4.1",
        "stream": true,
        "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": text }],
    });
    if !metadata.is_null() {
        body["metadata"] = metadata;
    }
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    sse_data(&text)
        .iter()
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|chunk| !chunk["usage"].is_null())
        .map(|chunk| chunk["usage"].clone())
        .unwrap()
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Concatenated `delta.content` of chat chunks.
pub fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// `GET url` with the test key, read as JSON.
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// The requests the mock received (`GET /mock/requests`).
pub async fn received(mock: &Process) -> Vec<Value> {
    client()
        .get(mock.url("/mock/requests"))
        .send()
        .await
        .expect("mock requests")
        .json()
        .await
        .expect("json")
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `promtool <args>` in the repository's root, `stdin` fed to it when
/// given, and fails the test with what it said unless it succeeds. The tests
/// need it: Debian's `prometheus` package has it.
pub fn promtool(args: &[&str], stdin: Option<&str>) {
    let spawned = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.unwrap_or_else(|e| {
        panic!("promtool cannot be run ({e}): install it with `apt-get install prometheus` (.ci/run does)")
    });
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("promtool's stdin");
    }
    drop(input);
    let output = child.wait_with_output().expect("promtool's output");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        stdin.unwrap_or_default()
    );
}
