//! The usage log: one record per proxied request with its exact tokens and
//! cost, read back through `/admin/usage` and `/admin/costs` (JSON and CSV);
//! every record kept while PostgreSQL is down and through a shutdown (spilled
//! to the spill file, written by the next process). Each black-box test that
//! can runs on SQLite and on PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Process, client};
use crate::stores::{
    Backend, PRICED_ADMIN_KEY as ADMIN_KEY, PrivatePostgres, TestStore, known, on_both_stores,
    priced_config,
};

/// A gateway config of `priced_config` with records written every 100 ms
/// and `usage_extra` lines under `usage:`.
fn config(mock: &Process, store: &TestStore, usage_extra: &str) -> String {
    priced_config(
        mock,
        store,
        &format!("usage:\n  flush_interval: 100ms\n{usage_extra}"),
    )
}

/// The cost of `prompt` and `completion` tokens at 2/8 USD per million, in
/// micro-USD rounded up once.
fn cost(prompt: i64, completion: i64) -> i64 {
    (prompt * 2_000_000 + completion * 8_000_000 + 999_999) / 1_000_000
}

/// A chat of `key` with tags: its status and usage.
async fn chat(gw: &Process, key: &str, text: &str, tags: &str) -> (u16, Value) {
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-switchyard-tags", tags)
        .json(&json!({ "model": "gpt-4.1", "messages": [{ "role": "user", "content": text }] }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["usage"].clone())
}

/// `GET path` with the admin key: status and body text.
async fn admin(gw: &Process, path: &str) -> (u16, String, String) {
    let response = client()
        .get(gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// Every record `/admin/usage` lists, page by page (newest first).
async fn all_records(gw: &Process) -> Vec<Value> {
    let mut records = Vec::new();
    let mut path = "/admin/usage?limit=7".to_owned();
    loop {
        let (status, _, text) = admin(gw, &path).await;
        assert_eq!(status, 200, "{text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/admin/usage?limit=7&cursor={next}"),
            None => return records,
        }
    }
}

/// Waits until `gw` lists `n` records; answers them.
async fn records(gw: &Process, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = all_records(gw).await;
        if records.len() >= n {
            assert_eq!(records.len(), n, "more records than requests");
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records arrived",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the unlabelled metric `name`.
async fn metric(gw: &Process, name: &str) -> f64 {
    let text = harness::metrics(gw).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

on_both_stores!(
    every_request_is_logged_with_its_tokens_and_cost_and_reported,
    a_shutdown_writes_every_answered_requests_record,
);

async fn every_request_is_logged_with_its_tokens_and_cost_and_reported(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    let (key, key_id) = store.create_key("app", &[]);
    known(&gw, &key).await;

    let mut expected = Vec::new();
    for n in 0..5 {
        let text = format!("question number {n} {}", "word ".repeat(n));
        let (status, usage) = chat(&gw, &key, &text, "support, eu").await;
        assert_eq!(status, 200);
        expected.push(usage);
    }
    expected.push(
        harness::stream_usage(
            &gw,
            &key,
            "a streamed question",
            json!({ "tags": ["batch"] }),
        )
        .await,
    );
    // An unknown model is refused before any upstream call: logged, free.
    let (status, _) = {
        let response = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({ "model": "nope", "messages": [{ "role": "user", "content": "x" }] }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 404);

    let mut listed = records(&gw, 7).await;
    listed.reverse();
    let refused = listed.pop().unwrap();
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["cost_micros"], 0);
    assert_eq!(refused["attempts"], 0);
    assert!(refused["error_type"].is_string(), "{refused}");

    let mut total = 0;
    for (record, usage) in listed.iter().zip(&expected) {
        let (prompt, completion) = (
            usage["prompt_tokens"].as_i64().unwrap(),
            usage["completion_tokens"].as_i64().unwrap(),
        );
        assert_eq!(record["input_tokens"], prompt, "{record}");
        assert_eq!(record["output_tokens"], completion, "{record}");
        assert_eq!(record["cost_micros"], cost(prompt, completion), "{record}");
        assert_eq!(record["cost_estimated"], false);
        assert_eq!(record["key_id"], key_id.as_str());
        assert_eq!(record["key_name"], "app");
        assert_eq!(record["model"], "gpt-4.1");
        assert_eq!(record["provider"], "up");
        assert_eq!(record["deployment"], "up/mock-1");
        assert_eq!(record["status"], 200);
        assert_eq!(record["attempts"], 1);
        assert!(record["error_type"].is_null());
        assert!(record["latency_us"].as_i64().unwrap() > 0);
        assert!(record["ttft_us"].as_i64().unwrap() > 0);
        assert!(record["route"].as_str().unwrap().contains("up/mock-1"));
        assert_eq!(record["id"].as_str().unwrap().len(), 32);
        total += cost(prompt, completion);
    }
    assert_eq!(listed[0]["tags"], json!(["support", "eu"]));
    // Tags from the body's `metadata.tags` when no header gives them.
    assert_eq!(listed[5]["tags"], json!(["batch"]));
    assert_eq!(listed[5]["stream"], true);

    // The report, from the rollups: the same sums.
    let (status, _, text) = admin(&gw, "/admin/costs?group_by=model,key").await;
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let served = rows.iter().find(|r| r["model"] == "gpt-4.1").unwrap();
    assert_eq!(served["requests"], 6, "{report}");
    assert_eq!(served["cost_micros"], total);
    assert_eq!(served["key"], key_id.as_str());
    assert_eq!(served["errors"], 0);
    let (_, _, text) = admin(&gw, "/admin/costs?group_by=tag").await;
    let by_tag: Value = serde_json::from_str(&text).unwrap();
    let tags: Vec<(String, i64)> = by_tag["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tag"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut tags = tags;
    tags.sort();
    assert_eq!(
        tags,
        [("batch".into(), 1), ("eu".into(), 5), ("support".into(), 5)]
    );
    let (_, _, text) = admin(&gw, "/admin/costs?group_by=day").await;
    let by_day: Value = serde_json::from_str(&text).unwrap();
    let day = by_day["rows"][0]["day"].as_str().unwrap();
    assert_eq!(day.len(), 10, "{by_day}");

    // CSV: a header, then one line per group.
    let (status, kind, text) = admin(&gw, "/admin/costs?group_by=model&format=csv").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("model,requests,errors,"));
    assert!(text.contains("gpt-4.1,6,0,"), "{text}");
    let (_, _, text) = admin(&gw, "/admin/usage?format=csv&status=200").await;
    assert_eq!(text.lines().count(), 7, "{text}");

    // Bad queries are refused, naming the parameter.
    for (path, param) in [
        ("/admin/costs?group_by=colour", "group_by"),
        ("/admin/costs?from=yesterday", "from"),
        ("/admin/usage?limit=0", "limit"),
        ("/admin/usage?cursor=x", "cursor"),
    ] {
        let (status, _, text) = admin(&gw, path).await;
        assert_eq!(status, 400, "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
    }
    assert_eq!(
        client()
            .get(gw.url("/admin/usage"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    assert_eq!(
        metric(&gw, "switchyard_usage_records_written_total").await,
        7.0
    );
    assert_eq!(
        metric(&gw, "switchyard_usage_records_dropped_total").await,
        0.0
    );
}

/// While PostgreSQL is stopped, requests go on and their records wait (past a
/// buffer of 4 in the spill file); a shutdown meanwhile spills the rest; when
/// the database is back, the next process writes every one of them.
#[tokio::test]
async fn records_wait_while_postgres_is_down_and_none_is_lost() {
    let pg = PrivatePostgres::start();
    let store = TestStore::at(&pg.url);
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("usage.spill.jsonl");
    let usage = format!("  buffer: 4\n  spill_file: {}\n", spill.display());
    let mock = harness::mock(&[]);
    let mut gw = harness::gateway(&config(&mock, &store, &usage));
    let (key, _) = store.create_key("app", &[]);
    known(&gw, &key).await;
    for n in 0..3 {
        assert_eq!(chat(&gw, &key, &format!("before {n}"), "").await.0, 200);
    }
    records(&gw, 3).await;

    pg.stop();
    for n in 0..20 {
        assert_eq!(chat(&gw, &key, &format!("during {n}"), "").await.0, 200);
    }
    // Past the buffer, records go to the spill file.
    wait_for_file(&spill).await;
    assert!(metric(&gw, "switchyard_usage_records_spilled_total").await > 0.0);
    assert_eq!(
        metric(&gw, "switchyard_usage_records_dropped_total").await,
        0.0
    );
    // The last writes wait for the store's acquire timeout (5 s) before the
    // records are spilled: bounded, with room for a loaded machine.
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(40)).success());
    assert!(
        gw.logs().contains("spilled for the next start"),
        "{}",
        gw.logs()
    );

    pg.resume();
    let gw = harness::gateway(&config(&mock, &store, &usage));
    let all = records(&gw, 23).await;
    let mut ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 23);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spill.exists() {
        assert!(
            Instant::now() < deadline,
            "the spill file was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&gw, "switchyard_usage_records_dropped_total").await,
        0.0
    );
}

/// SIGTERM right after the answers (before the next flush): the records are
/// written on the way out, and a new process on the same store lists them.
async fn a_shutdown_writes_every_answered_requests_record(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let slow = "  flush_interval: 1h\n";
    let mut gw = harness::gateway(
        &config(&mock, &store, slow).replace("usage:\n  flush_interval: 100ms\n", "usage:\n"),
    );
    let (key, _) = store.create_key("app", &[]);
    known(&gw, &key).await;
    let answered: Vec<_> = (0..30)
        .map(|n| {
            let (gw, key) = (&gw, key.clone());
            async move { chat(gw, &key, &format!("q{n}"), "").await.0 }
        })
        .collect();
    let statuses = futures_util::future::join_all(answered).await;
    assert!(statuses.iter().all(|s| *s == 200));
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).success());
    let gw = harness::gateway(&config(&mock, &store, ""));
    assert_eq!(records(&gw, 30).await.len(), 30);
}

/// `gpt-4.1` (2/8 USD per million) fails; its fallback `cheap` (0.5/1 USD)
/// serves: the record costs the cheap price and saves the difference; a
/// request `cheap` serves as asked saves nothing.
#[tokio::test]
async fn a_cheaper_fallback_saves_the_difference_with_the_model_asked_for() {
    let store = TestStore::new(Backend::Sqlite);
    let failing = harness::mock(&["--error-rate", "1"]);
    let good = harness::mock(&[]);
    let one = "      - {{ provider: up, model: mock-1, price: {{ input: 2.0, output: 8.0 }} }}\n";
    let one = one.replace("{{", "{").replace("}}", "}");
    let yaml = config(&failing, &store, "").replace(
        &one,
        &format!(
            "{one}    fallbacks: [cheap]\n  cheap:\n    deployments:\n      - {{ provider: backup, model: mock-2, price: {{ input: 0.5, output: 1.0 }} }}\n"
        ),
    );
    let yaml = yaml.replace(
        "providers:\n",
        &format!(
            "retries: {{ attempts: 1 }}\nproviders:\n  backup: {{ kind: openai, base_url: {}, api_key: k }}\n",
            good.url("/v1")
        ),
    );
    let gw = harness::gateway(&yaml);
    let (key, _) = store.create_key("app", &[]);
    known(&gw, &key).await;
    let (status, usage) = chat(&gw, &key, "fall back please", "").await;
    assert_eq!(status, 200);
    let (prompt, completion) = (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    );
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({ "model": "cheap", "messages": [{ "role": "user", "content": "direct" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut listed = records(&gw, 2).await;
    listed.sort_by_key(|r| r["model"].as_str().unwrap().to_owned());
    let [direct, fallen] = listed.as_slice() else {
        panic!("{listed:?}")
    };
    assert_eq!(direct["saved_micros"], 0);
    let cheap = (prompt * 500_000 + completion * 1_000_000 + 999_999) / 1_000_000;
    assert_eq!(fallen["model"], "gpt-4.1");
    assert_eq!(fallen["deployment"], "backup/mock-2");
    assert_eq!(fallen["cost_micros"], cheap);
    assert_eq!(fallen["saved_micros"], cost(prompt, completion) - cheap);
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
