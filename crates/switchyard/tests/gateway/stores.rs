//! The stores the key tests run against: a fresh SQLite file, a fresh database
//! on the PostgreSQL server `scripts/services.sh` started, or a PostgreSQL
//! server of a test's own (to stop it mid-test); and `switchyard keys|teams`
//! run against one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs each `async fn name(backend: Backend)` of the calling module as two
/// tests, `sqlite::name` and `postgres::name`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::stores::Backend::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::stores::Backend::Postgres).await;
            })*
        }
    };
}

pub(crate) use on_both_stores;

/// A store for one test.
pub struct TestStore {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestStore {
    /// A fresh store of `backend`.
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                url: create_database(&shared_postgres()),
                _dir: None,
            },
        }
    }

    /// The store at `url`, which someone else keeps.
    pub fn at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            _dir: None,
        }
    }

    /// The SQLite file's path.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }

    /// `store: { url, poll_interval }` for a gateway config.
    pub fn yaml(&self) -> String {
        format!("store:\n  url: \"{}\"\n  poll_interval: 200ms\n", self.url)
    }

    /// Runs `switchyard <args> --store URL` and answers its stdout; the
    /// command must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.cli_output(args);
        assert!(
            output.status.success(),
            "switchyard {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `switchyard <args> --store URL`, whatever the outcome.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .args(["--store", &self.url])
            .output()
            .unwrap()
    }

    /// `switchyard keys create --name NAME <extra>`: the key's text and id.
    pub fn create_key(&self, name: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["keys", "create", "--name", name, "--json"];
        args.extend_from_slice(extra);
        let created: serde_json::Value = serde_json::from_str(&self.cli(&args)).unwrap();
        (
            created["key"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        )
    }
}

/// The server `scripts/services.sh` started; the tests fail without it.
fn shared_postgres() -> String {
    std::env::var("SWITCHYARD_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_PG_URL is not set, so the PostgreSQL store cannot be tested. \
             Run ./scripts/test, which starts PostgreSQL, or `source scripts/services.sh` \
             in your shell and run cargo test from it"
        )
    })
}

/// A PostgreSQL binary (`SWITCHYARD_PG_BIN`, exported by `scripts/services.sh`).
fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("SWITCHYARD_PG_BIN")
        .expect("SWITCHYARD_PG_BIN is not set: run the tests through ./scripts/test");
    PathBuf::from(dir).join(name)
}

/// A new database on the server at `base` (a URL ending in `/postgres`): its URL.
fn create_database(base: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "gw_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let status = Command::new(pg_bin("createdb"))
        .args(["--maintenance-db", base, &name])
        .status()
        .unwrap();
    assert!(status.success(), "createdb {name} failed");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Everything the database holds, as `pg_dump` writes it.
pub fn pg_dump(url: &str) -> Vec<u8> {
    let output = Command::new(pg_bin("pg_dump"))
        .args(["--data-only", url])
        .output()
        .unwrap();
    assert!(output.status.success(), "pg_dump failed");
    output.stdout
}

/// A PostgreSQL server of one test's own, to stop and start again; stopped
/// (by its PID) when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    /// A database on it for the test.
    pub url: String,
}

impl PrivatePostgres {
    /// Makes a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let as_pg = std::env::var("SWITCHYARD_PG_AS").unwrap_or_default();
        if !as_pg.is_empty() {
            // The server runs as `postgres`, which must be able to enter and own these.
            Command::new("chmod")
                .args(["755", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
            Command::new("install")
                .args(["-d", "-m", "700", "-o", &as_pg, data.to_str().unwrap()])
                .status()
                .unwrap();
        }
        let data = data.to_str().unwrap().to_owned();
        run_pg(
            &as_pg,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "switchyard", "--no-sync"],
        );
        let port = free_port();
        let mut server = Self {
            url: format!("postgres://switchyard@127.0.0.1:{port}/postgres"),
            dir,
            port,
        };
        server.resume();
        server.url = create_database(&server.url);
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// Starts it (again), on the same port.
    pub fn resume(&self) {
        let as_pg = std::env::var("SWITCHYARD_PG_AS").unwrap_or_default();
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            self.port,
            self.data()
        );
        let log = format!("{}/server.log", self.data());
        run_pg(
            &as_pg,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops it at once (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(format!("{}/postmaster.pid", self.data()))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).output();
            for _ in 0..100 {
                let alive = Command::new("kill")
                    .args(["-0", &pid])
                    .output()
                    .map(|o| o.status)
                    .is_ok_and(|s| s.success());
                if !alive {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_pg(as_pg: &str, program: &str, args: &[&str]) {
    let program = pg_bin(program);
    let output = if as_pg.is_empty() {
        Command::new(&program).args(args).output()
    } else {
        Command::new("runuser")
            .args(["-u", as_pg, "--"])
            .arg(&program)
            .args(args)
            .output()
    }
    .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis: { url, prefix, timeout }` on the Redis `scripts/services.sh`
/// started, with a prefix of this test's own (so tests sharing the server
/// never meet). These tests need Redis to decide: the timeout is 2 s, not the
/// default 50 ms, so that a test machine busy with the other tests does not
/// mark Redis down and fall back to each process's own limits. The tests of
/// a Redis that fails start one of their own ([`PrivateRedis`]).
pub fn shared_redis_yaml(extra: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_REDIS_URL is not set, so the shared limits cannot be tested. \
             Run ./scripts/test, which starts Redis, or `source scripts/services.sh` first"
        )
    });
    let prefix = format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    format!("redis:\n  url: \"{url}\"\n  prefix: {prefix}\n  timeout: 2s\n{extra}")
}

/// `redis-cli -u url ARGS…`, its output as text.
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `INFO commandstats`' count of calls of `command` (lower case).
pub fn redis_calls(url: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    redis_cli(url, &["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A Redis server of one test's own, to stop and start again on the same
/// port; stopped (by its PID) when dropped.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let mut redis = Self {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        redis.resume();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it answers.
    pub fn resume(&mut self) {
        let bin = std::env::var("SWITCHYARD_REDIS_BIN")
            .expect("SWITCHYARD_REDIS_BIN is not set: run the tests through ./scripts/test");
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis did not start");
    }

    /// Freezes it (`SIGSTOP`): its port still takes connections, and nothing
    /// on them is answered, until [`thaw`](Self::thaw).
    #[allow(dead_code, reason = "the reliability suite's")]
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (`SIGCONT`).
    #[allow(dead_code, reason = "the reliability suite's")]
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    #[allow(dead_code, reason = "the reliability suite's")]
    fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([format!("-{name}"), child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Stops it at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin key of [`priced_config`]'s gateways.
pub const PRICED_ADMIN_KEY: &str = "sk-priced-admin";

/// A keys-mode gateway in front of `mock` with `gpt-4.1` at 2 USD in and
/// 8 USD out per million tokens, on `store` (spend written every 100 ms), the
/// admin API on ([`PRICED_ADMIN_KEY`]), and `extra` top-level YAML
/// (`redis:`, `limits:`, `usage:`).
pub fn priced_config(mock: &crate::harness::Process, store: &TestStore, extra: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  admin_key: {PRICED_ADMIN_KEY}
{}  flush_interval: 100ms
{extra}
auth:
  mode: keys
providers:
  up:
    kind: openai
    base_url: {}
    api_key: {}
models:
  gpt-4.1:
    deployments:
      - {{ provider: up, model: mock-1, price: {{ input: 2.0, output: 8.0 }} }}
"#,
        store.yaml(),
        mock.url("/v1"),
        crate::harness::UPSTREAM_KEY
    )
}

/// A chat request of `key` with `body`: its status, headers and body.
pub async fn ask(
    gw: &crate::harness::Process,
    key: &str,
    body: &serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = crate::harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// Waits until `gw` knows `key` (it follows the store's changes), asking
/// `/v1/models`, which no limit counts.
pub async fn known(gw: &crate::harness::Process, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let response = crate::harness::client()
            .get(gw.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never learned the key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
