//! The admin API for keys and teams over HTTP: the whole life of a key and a
//! team, pages, refusals naming their field, changes live at once on the
//! gateway that made them and within a second on another, the admin key on
//! every route, 503 while the database is down, and the OpenAPI document.
//! Each test runs on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{self, Process, client};
use crate::keys::{chat_with, config_with, until_status};
use crate::stores::{Backend, PrivatePostgres, TestStore, on_both_stores};

const ADMIN_KEY: &str = "sk-admin-api-test";

/// A gateway on `store` with the admin API on (and `auth.rotation_grace: 2s`).
fn gateway(mock: &Process, store_yaml: &str) -> Process {
    harness::gateway(&config_with(
        mock,
        store_yaml,
        &format!("  admin_key: {ADMIN_KEY}"),
        "  rotation_grace: 2s",
    ))
}

/// A fresh store of `backend`, a mock, and a gateway on them; dropped in
/// that order reversed (the gateway first).
struct Setup {
    gw: Process,
    mock: Process,
    store: TestStore,
}

impl Setup {
    fn new(backend: Backend) -> Self {
        let store = TestStore::new(backend);
        let mock = harness::mock(&[]);
        Self {
            gw: gateway(&mock, &store.yaml()),
            mock,
            store,
        }
    }
}

/// Sends `method path` (with `body` as JSON) with `key`.
async fn respond(
    gw: &Process,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client().request(method, gw.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// [`respond`]'s status and JSON body, which never shows a digest.
async fn send(
    gw: &Process,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let response = respond(gw, method, path, key, body).await;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    assert_no_digest(&body);
    (status, body)
}

/// No field named `digest`, and no value that reads as a SHA-256 digest in hex.
fn assert_no_digest(value: &Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                assert!(!name.contains("digest"), "{value}");
                assert_no_digest(field);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_digest),
        Value::String(text) => assert!(
            !(text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())),
            "{text}"
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// An admin request.
async fn admin(gw: &Process, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    send(gw, method, path, Some(ADMIN_KEY), body).await
}

/// `POST /admin/keys` with `body`: the key's text and id.
async fn create_key(gw: &Process, body: Value) -> (String, String) {
    let (status, created) = admin(gw, Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    (key, created["id"].as_str().unwrap().to_owned())
}

/// `POST /admin/teams` with `body`: the team's id.
async fn create_team(gw: &Process, body: Value) -> String {
    let (status, team) = admin(gw, Method::POST, "/admin/teams", Some(body)).await;
    assert_eq!(status, 201, "{team}");
    team["id"].as_str().unwrap().to_owned()
}

/// `POST /admin/keys` with `body` as it is, and `content_type` when given.
async fn post_raw(gw: &Process, body: &str, content_type: Option<&str>) -> (u16, Value) {
    let mut request = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Asserts an OpenAI-shaped error with `status`, `code` and `param`.
fn assert_error(answer: &(u16, Value), status: u16, code: Option<&str>, param: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"].as_str(), code, "{body}");
    assert_eq!(body["error"]["param"].as_str(), param, "{body}");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    assert!(body["error"]["type"].as_str().is_some(), "{body}");
}

/// The routes of the admin API for keys and teams, with a body each accepts.
fn routes(key: &str, team: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/admin/keys".into(),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, "/admin/keys".into(), None),
        (Method::GET, format!("/admin/keys/{key}"), None),
        (Method::PATCH, format!("/admin/keys/{key}"), Some(json!({}))),
        (Method::POST, format!("/admin/keys/{key}/rotate"), None),
        (Method::DELETE, format!("/admin/keys/{key}"), None),
        (
            Method::POST,
            "/admin/teams".into(),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, "/admin/teams".into(), None),
        (Method::GET, format!("/admin/teams/{team}"), None),
        (
            Method::PATCH,
            format!("/admin/teams/{team}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/admin/teams/{team}"), None),
        (Method::GET, "/admin/openapi.json".into(), None),
    ]
}

on_both_stores!(
    keys_and_teams_live_their_whole_life_over_http,
    listings_come_in_pages_with_a_cursor,
    every_admin_route_needs_the_admin_key_and_is_gone_without_one,
    refusals_name_the_field_at_fault,
    a_key_made_over_http_works_at_once_here_and_within_a_second_elsewhere,
    rotation_over_http_keeps_the_old_key_for_its_grace,
    the_openapi_document_lists_every_path,
);

async fn keys_and_teams_live_their_whole_life_over_http(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;

    let team_id = create_team(gw, json!({"name": "research", "models": ["gpt-*"]})).await;
    let team_id = team_id.as_str();
    assert!(team_id.starts_with("team_"), "{team_id}");
    let (key, id) = create_key(
        gw,
        json!({"name": "app", "team_id": team_id, "rpm": 60, "budget_usd": 5.0,
               "budget_period": "month", "metadata": {"owner": "ops"}}),
    )
    .await;
    assert!(key.starts_with("sk-sy-"));
    let key_path = format!("/admin/keys/{id}");
    let team_path = format!("/admin/teams/{team_id}");

    let (status, shown) = admin(gw, Method::GET, &key_path, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (&shown["name"], &shown["team_id"], &shown["rpm"]),
        (&json!("app"), &json!(team_id), &json!(60))
    );
    assert_eq!(shown["budget_usd"], 5.0);
    assert_eq!(shown["metadata"]["owner"], "ops");
    assert!(key.starts_with(shown["prefix"].as_str().unwrap()));
    assert!(shown.get("key").is_none() && !shown.to_string().contains(&key));
    let (_, listed) = admin(gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&key), "{listed}");

    // `null` clears, an absent field stays.
    let (status, changed) = admin(
        gw,
        Method::PATCH,
        &key_path,
        Some(json!({"name": "app-2", "rpm": null, "budget_usd": null})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (&changed["name"], &changed["rpm"], &changed["budget_usd"]),
        (&json!("app-2"), &Value::Null, &Value::Null)
    );
    assert_eq!(changed["team_id"], team_id);
    let (status, team) = admin(
        gw,
        Method::PATCH,
        &team_path,
        Some(json!({"models": [], "disabled": false})),
    )
    .await;
    assert_eq!((status, &team["models"]), (200, &json!([])), "{team}");
    let (_, teams) = admin(gw, Method::GET, "/admin/teams", None).await;
    assert_eq!(teams["data"][0]["id"], team_id);

    // A team with a live key cannot go; once the key is revoked it can.
    let refused = admin(gw, Method::DELETE, &team_path, None).await;
    assert_error(&refused, 409, Some("team_has_keys"), None);
    let (status, revoked) = admin(gw, Method::DELETE, &key_path, None).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let again = admin(gw, Method::PATCH, &key_path, Some(json!({}))).await;
    assert_error(&again, 409, Some("key_revoked"), None);
    let rotate = admin(gw, Method::POST, &format!("{key_path}/rotate"), None).await;
    assert_error(&rotate, 409, Some("key_revoked"), None);
    let (status, deleted) = admin(gw, Method::DELETE, &team_path, None).await;
    assert_eq!(status, 200, "{deleted}");
    assert!(deleted["deleted_at"].is_string(), "{deleted}");
    let gone = admin(gw, Method::PATCH, &team_path, Some(json!({}))).await;
    assert_error(&gone, 404, Some("not_found"), None);
    let (_, teams) = admin(gw, Method::GET, "/admin/teams", None).await;
    assert_eq!(teams["data"], json!([]));
    // Revoked keys are listed only when asked for.
    let (_, live) = admin(gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(live["data"], json!([]));
    let (_, all) = admin(gw, Method::GET, "/admin/keys?include_revoked=true", None).await;
    assert_eq!(all["data"][0]["id"], id.as_str());

    let missing = admin(gw, Method::GET, "/admin/keys/key_0000000000000000", None).await;
    assert_error(&missing, 404, Some("not_found"), None);
    let missing = admin(
        gw,
        Method::DELETE,
        "/admin/teams/team_0000000000000000",
        None,
    )
    .await;
    assert_error(&missing, 404, Some("not_found"), None);
}

async fn listings_come_in_pages_with_a_cursor(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;
    let team = create_team(gw, json!({"name": "t"})).await;
    let mut made = Vec::new();
    for n in 0..7 {
        let team_id = if n % 2 == 0 {
            Some(team.as_str())
        } else {
            None
        };
        made.push(
            create_key(gw, json!({"name": format!("k{n}"), "team_id": team_id}))
                .await
                .1,
        );
    }
    made.sort();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/admin/keys?limit=3".to_owned();
    loop {
        let (status, page) = admin(gw, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        seen.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/keys?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, made, "every key once, by id");

    let (_, of_team) = admin(
        gw,
        Method::GET,
        &format!("/admin/keys?team_id={team}"),
        None,
    )
    .await;
    assert_eq!(of_team["data"].as_array().unwrap().len(), 4, "{of_team}");
    assert_eq!(of_team["next_cursor"], Value::Null);
    let (_, default_page) = admin(gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(default_page["data"].as_array().unwrap().len(), 7);
    let mut teams = [team, create_team(gw, json!({"name": "u"})).await];
    teams.sort();
    let (_, first) = admin(gw, Method::GET, "/admin/teams?limit=1", None).await;
    assert_eq!(first["data"][0]["id"], teams[0].as_str());
    assert_eq!(first["next_cursor"], teams[0].as_str());
    let path = format!("/admin/teams?limit=1&cursor={}", teams[0]);
    let (_, second) = admin(gw, Method::GET, &path, None).await;
    assert_eq!(second["data"][0]["id"], teams[1].as_str());
    assert_eq!(second["next_cursor"], Value::Null);
}

async fn every_admin_route_needs_the_admin_key_and_is_gone_without_one(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;
    let (key, id) = create_key(gw, json!({"name": "app"})).await;
    let team = &create_team(gw, json!({"name": "t"})).await;
    for (method, path, body) in routes(&id, team) {
        for wrong in [None, Some("sk-admin-api-tes"), Some(key.as_str())] {
            let answer = send(gw, method.clone(), &path, wrong, body.clone()).await;
            assert_error(&answer, 401, Some("invalid_api_key"), None);
        }
    }
    // Nothing changed.
    let (_, shown) = admin(gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(shown["revoked_at"], Value::Null);

    let off = harness::gateway(&config_with(&setup.mock, &setup.store.yaml(), "", ""));
    for (method, path, body) in routes(&id, team) {
        let answer = send(&off, method, &path, Some(ADMIN_KEY), body).await;
        assert_eq!(answer.0, 404, "{path}: {}", answer.1);
    }
}

async fn refusals_name_the_field_at_fault(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;
    let (_, id) = create_key(gw, json!({"name": "app"})).await;
    let key_path = format!("/admin/keys/{id}");
    let invalid = Some("invalid_value");
    let post = |body: Value| admin(gw, Method::POST, "/admin/keys", Some(body));

    assert_error(
        &post(json!({"name": "a", "rpm": 0})).await,
        400,
        invalid,
        Some("rpm"),
    );
    assert_error(
        &post(json!({"name": "  "})).await,
        400,
        invalid,
        Some("name"),
    );
    assert_error(
        &post(json!({"name": "a", "models": [""]})).await,
        400,
        invalid,
        Some("models"),
    );
    assert_error(
        &post(json!({"name": "a", "budget_usd": -1})).await,
        400,
        invalid,
        Some("budget_usd"),
    );
    let past = json!({"name": "a", "expires_at": "2001-01-01T00:00:00Z"});
    assert_error(&post(past).await, 400, invalid, Some("expires_at"));
    let no_team = json!({"name": "a", "team_id": "team_0000000000000000"});
    assert_error(&post(no_team).await, 400, invalid, Some("team_id"));
    // What the extractors refuse: the same shape, with the field when known.
    assert_error(
        &post(json!({"name": "a", "colour": "red"})).await,
        400,
        None,
        Some("colour"),
    );
    assert_error(
        &post(json!({"name": "a", "rpm": "many"})).await,
        400,
        None,
        Some("rpm"),
    );
    assert_error(&post(json!({"rpm": 5})).await, 400, None, Some("name"));
    assert_error(&post(json!(["a"])).await, 400, None, None);
    let json = Some("application/json");
    assert_error(&post_raw(gw, r#"{"name": "#, json).await, 400, None, None);
    assert_error(
        &post_raw(gw, r#"{"name": "a"}"#, None).await,
        400,
        None,
        None,
    );
    let plain = Some("text/plain");
    assert_error(
        &post_raw(gw, r#"{"name": "a"}"#, plain).await,
        400,
        None,
        None,
    );
    assert_error(&post_raw(gw, "", json).await, 400, None, None);
    let huge = format!(
        r#"{{"name": "a", "metadata": {{"x": "{}"}}}}"#,
        "y".repeat(70_000)
    );
    let (status, body) = post_raw(gw, &huge, json).await;
    assert_eq!(status, 413, "{body}");

    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
    ] {
        let answer = admin(gw, Method::GET, &format!("/admin/keys?{query}"), None).await;
        assert_eq!(answer.1["error"]["param"], param, "{query}: {}", answer.1);
        assert_eq!(answer.0, 400);
    }
    let answer = admin(gw, Method::GET, "/admin/keys?include_revoked=maybe", None).await;
    assert_error(&answer, 400, None, Some("include_revoked"));
    let answer = admin(gw, Method::GET, "/admin/teams?colour=red", None).await;
    assert_error(&answer, 400, None, Some("colour"));
    let answer = admin(gw, Method::GET, "/admin/keys/%FF", None).await;
    assert_error(&answer, 400, None, Some("id"));

    let patch = |body: Value| admin(gw, Method::PATCH, &key_path, Some(body));
    assert_error(
        &patch(json!({"name": ""})).await,
        400,
        invalid,
        Some("name"),
    );
    assert_error(&patch(json!({"tpm": 0})).await, 400, invalid, Some("tpm"));
    let no_amount = json!({"budget_period": "day"});
    assert_error(&patch(no_amount).await, 400, invalid, Some("budget_period"));
    let rotate = format!("{key_path}/rotate");
    let answer = admin(gw, Method::POST, &rotate, Some(json!({"grace": "soon"}))).await;
    assert_error(&answer, 400, None, Some("grace"));
    let team = create_team(gw, json!({"name": "t"})).await;
    let taken = admin(gw, Method::POST, "/admin/teams", Some(json!({"name": "t"}))).await;
    assert_error(&taken, 409, Some("conflict"), Some("name"));
    let team_path = format!("/admin/teams/{team}");
    let answer = admin(gw, Method::PATCH, &team_path, Some(json!({"rpm": -3}))).await;
    assert_error(&answer, 400, invalid, Some("rpm"));

    // A method a route does not have: 405 with `allow`, in the same shape.
    let response = client()
        .put(gw.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

async fn a_key_made_over_http_works_at_once_here_and_within_a_second_elsewhere(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let a = gateway(&mock, &store.yaml());
    let b = gateway(&mock, &store.yaml());
    let (key, id) = create_key(&a, json!({"name": "app", "models": ["gpt-*"]})).await;
    // On the gateway that made it, the first request is served.
    assert_eq!(chat_with(&a, &key, "gpt-4.1").await.0, 200);
    assert_eq!(chat_with(&a, &key, "claude-x").await.0, 403);
    let took = until_status(&b, &key, "gpt-4.1", 200).await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A change is live at once too, and a revocation.
    let (status, _) = admin(
        &a,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"models": []})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chat_with(&a, &key, "claude-x").await.0, 200);
    let (status, _) = admin(&a, Method::DELETE, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, body) = chat_with(&a, &key, "gpt-4.1").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_api_key")),
        "{body}"
    );
    let took = until_status(&b, &key, "gpt-4.1", 401).await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A team disabled over HTTP takes its keys with it, at once.
    let team = create_team(&a, json!({"name": "ops"})).await;
    let (member, _) = create_key(&a, json!({"name": "member", "team_id": team})).await;
    assert_eq!(chat_with(&a, &member, "gpt-4.1").await.0, 200);
    let path = format!("/admin/teams/{team}");
    admin(&a, Method::PATCH, &path, Some(json!({"disabled": true}))).await;
    assert_eq!(chat_with(&a, &member, "gpt-4.1").await.0, 401);
}

async fn rotation_over_http_keeps_the_old_key_for_its_grace(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;
    let (old_a, a) = create_key(gw, json!({"name": "a"})).await;
    let (old_b, b) = create_key(gw, json!({"name": "b"})).await;

    // No body: the configured grace (2s).
    let (status, rotated) = admin(gw, Method::POST, &format!("/admin/keys/{a}/rotate"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_a = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_a, old_a);
    assert_eq!(rotated["id"], a.as_str());
    assert!(new_a.starts_with(rotated["prefix"].as_str().unwrap()));
    // A grace of its own.
    let body = Some(json!({"grace": "1h"}));
    let (status, rotated) = admin(gw, Method::POST, &format!("/admin/keys/{b}/rotate"), body).await;
    assert_eq!(status, 200, "{rotated}");
    let new_b = rotated["key"].as_str().unwrap().to_owned();

    for key in [&old_a, &new_a, &old_b, &new_b] {
        assert_eq!(chat_with(gw, key, "gpt-4.1").await.0, 200);
    }
    let took = until_status(gw, &old_a, "gpt-4.1", 401).await;
    assert!(took <= Duration::from_secs(4), "{took:?}");
    for key in [&new_a, &old_b, &new_b] {
        assert_eq!(chat_with(gw, key, "gpt-4.1").await.0, 200);
    }
}

async fn the_openapi_document_lists_every_path(backend: Backend) {
    let setup = Setup::new(backend);
    let gw = &setup.gw;
    let response = client()
        .get(gw.url("/admin/openapi.json"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{document}"
    );
    let mut paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/admin/keys",
            "/admin/keys/{id}",
            "/admin/keys/{id}/rotate",
            "/admin/openapi.json",
            "/admin/teams",
            "/admin/teams/{id}",
        ]
    );
    for (_, path, _) in routes("{id}", "{id}") {
        assert!(document["paths"].get(&path).is_some(), "{path}");
    }
}

/// With the database stopped, admin writes and reads answer 503 (with
/// `retry-after`) within the store's acquire timeout, while the keys the
/// gateway knows keep serving; when it is back, writes work again.
#[tokio::test]
async fn admin_writes_answer_503_promptly_while_postgres_is_down() {
    let pg = PrivatePostgres::start();
    let store = TestStore::at(&pg.url);
    let mock = harness::mock(&[]);
    let gw = &gateway(&mock, &format!("{}  acquire_timeout: 1s\n", store.yaml()));
    let (key, id) = create_key(gw, json!({"name": "app"})).await;
    assert_eq!(chat_with(gw, &key, "gpt-4.1").await.0, 200);

    pg.stop();
    // Every route but the document's reads or writes the store.
    let stored = routes(&id, "team_0000000000000000")
        .into_iter()
        .filter(|(_, path, _)| path != "/admin/openapi.json");
    for (method, path, body) in stored {
        let start = Instant::now();
        let response = respond(gw, method.clone(), &path, Some(ADMIN_KEY), body).await;
        let took = start.elapsed();
        assert_eq!(response.status(), 503, "{method} {path}");
        assert_eq!(response.headers()["retry-after"], "1", "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
        // Within the acquire timeout (1s), with room for a slow machine.
        assert!(
            took < Duration::from_millis(1500),
            "{method} {path}: {took:?}"
        );
        assert_eq!(chat_with(gw, &key, "gpt-4.1").await.0, 200);
    }
    let document = admin(gw, Method::GET, "/admin/openapi.json", None).await;
    assert_eq!(document.0, 200);

    pg.resume();
    let start = Instant::now();
    loop {
        let back = Some(json!({"name": "back"}));
        let (status, body) = admin(gw, Method::POST, "/admin/keys", back).await;
        if status == 201 {
            let late = body["key"].as_str().unwrap();
            assert_eq!(chat_with(gw, late, "gpt-4.1").await.0, 200);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
