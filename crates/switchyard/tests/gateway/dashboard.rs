//! The dashboard (`/ui`) from outside: signing in and out, the session
//! cookie, CSRF, read-only team sessions that see their own team only, the
//! sign-in limit, sessions kept in the store across a restart, the
//! playground's chat through the pipeline, and the dashboard turned off or
//! moved. (The pages in a real browser: e2e/test_dashboard.py.)

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::harness::{self, Process};
use crate::keys::config_with;
use crate::stores::{Backend, TestStore};

const ADMIN_KEY: &str = "sk-dashboard-admin";

/// Every page a session may GET.
const PAGES: [&str; 8] = [
    "/",
    "/costs",
    "/requests",
    "/keys",
    "/teams",
    "/providers",
    "/playground",
    "/costs.csv",
];

const FORM: &str = "application/x-www-form-urlencoded";

/// A form's fields, as a browser sends them.
fn encode(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// A client that does not follow redirects (they are what is tested) and
/// keeps no cookies (each test sends the session's itself).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn gateway(mock: &Process, store: &TestStore, ui: &str) -> Process {
    let usage = "usage:\n  flush_interval: 100ms\n";
    harness::gateway(&config_with(
        mock,
        &format!("{}{usage}{ui}", store.yaml()),
        &format!("  admin_key: {ADMIN_KEY}"),
        "",
    ))
}

/// Signs in with `key`: the session cookie (`name=value`).
async fn sign_in(gw: &Process, key: &str) -> String {
    let response = browser()
        .post(gw.url("/ui/login"))
        .header("content-type", FORM)
        .body(encode(&[("key", key)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/ui/");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    cookie.split(';').next().unwrap().to_owned()
}

async fn get(gw: &Process, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = browser().get(gw.url(&format!("/ui{path}")));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn post(
    gw: &Process,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut request = browser()
        .post(gw.url(&format!("/ui{path}")))
        .header("content-type", FORM)
        .body(encode(form));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The CSRF token on a page.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with its CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

/// The dashboard path of the request whose row in the log holds `row` (the
/// usage log is written in batches: waited for, 10 s at most).
async fn detail_of(gw: &Process, cookie: &str, row: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let (_, log) = get(gw, "/requests", Some(cookie)).await;
        if log.contains(row) {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let from = &log[log.find(row).unwrap()..];
    let at = from.find("href=\"/ui/requests/").unwrap() + 9;
    from[at..].split('"').next().unwrap().to_owned()
}

async fn admin_json(gw: &Process, path: &str, body: Value) -> Value {
    let response = harness::client()
        .post(gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn chat(gw: &Process, key: &str, model: &str) -> u16 {
    harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_page_and_form_refuses_without_a_session_and_forms_without_their_token() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "");
    for page in PAGES {
        let response = browser()
            .get(gw.url(&format!("/ui{page}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "GET {page}");
        assert_eq!(response.headers()["location"], "/ui/login", "GET {page}");
    }
    for form in [
        "/keys",
        "/teams",
        "/logout",
        "/keys/key_0/revoke",
        "/providers/canary/gpt-4.1/pause",
    ] {
        let (status, _) = post(&gw, form, None, &[("name", "x")]).await;
        assert_eq!(status, 401, "POST {form}");
    }
    // A forged or expired cookie is no session either.
    let (status, _) = get(&gw, "/keys", Some("switchyard_session=forged")).await;
    assert_eq!(status, 303);

    let (status, page) = post(&gw, "/login", None, &[("key", "sk-wrong")]).await;
    assert_eq!(status, 401);
    assert!(page.contains("class=\"flash error\""), "{page}");

    let cookie = sign_in(&gw, ADMIN_KEY).await;
    for page in PAGES {
        let (status, body) = get(&gw, page, Some(&cookie)).await;
        assert_eq!(status, 200, "GET {page}: {body}");
    }
    // With the session but without (or with a wrong) CSRF token: 403, nothing made.
    let (status, _) = post(&gw, "/keys", Some(&cookie), &[("name", "forged")]).await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &gw,
        "/keys",
        Some(&cookie),
        &[("name", "forged"), ("csrf", "nope")],
    )
    .await;
    assert_eq!(status, 403);
    let (_, keys) = get(&gw, "/keys", Some(&cookie)).await;
    assert!(!keys.contains("forged"), "no key was made");

    // With it: the key is made, shown once, and works at once.
    let token = csrf(&keys);
    let (status, made) = post(
        &gw,
        "/keys",
        Some(&cookie),
        &[("name", "from-ui"), ("rpm", "100"), ("csrf", &token)],
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let at = made.find("id=\"new-key\">").unwrap() + 13;
    let key = made[at..].split('<').next().unwrap().to_owned();
    assert!(key.starts_with("sk-sy-"), "{key}");
    assert_eq!(chat(&gw, &key, "gpt-4.1").await, 200);
    let (_, keys) = get(&gw, "/keys", Some(&cookie)).await;
    assert!(
        keys.contains("from-ui") && !keys.contains(&key),
        "listed, its text never again"
    );

    // Sign-out ends the session for good.
    let (status, _) = post(&gw, "/logout", Some(&cookie), &[("csrf", &token)]).await;
    assert_eq!(status, 303);
    let (status, _) = get(&gw, "/keys", Some(&cookie)).await;
    assert_eq!(status, 303, "the old cookie no longer signs in");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_scoped_and_secure_behind_tls() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "ui:\n  session_ttl: 2h\n");
    for (proto, secure) in [(None, false), (Some("https"), true)] {
        let mut request = browser()
            .post(gw.url("/ui/login"))
            .header("content-type", FORM)
            .body(encode(&[("key", ADMIN_KEY)]));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let response = request.send().await.unwrap();
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let token = cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("switchyard_session=")
            .unwrap();
        assert!(token.len() >= 43, "32 random bytes: {cookie}");
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=7200"] {
            assert!(cookie.contains(part), "{part} in {cookie}");
        }
        assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
        // Only the token's digest is in the store.
        let db = std::fs::read(store.sqlite_path().unwrap()).unwrap();
        assert!(
            !db.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is not stored"
        );
    }
    let cookie = sign_in(&gw, ADMIN_KEY).await;
    let response = browser()
        .get(gw.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'self'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
}

#[tokio::test]
async fn a_team_session_is_read_only_and_sees_its_own_team_only() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "");
    let red = admin_json(&gw, "/admin/teams", json!({ "name": "red" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let blue = admin_json(&gw, "/admin/teams", json!({ "name": "blue" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let red_key = admin_json(
        &gw,
        "/admin/keys",
        json!({ "name": "red-app", "team_id": red }),
    )
    .await;
    let blue_key = admin_json(
        &gw,
        "/admin/keys",
        json!({ "name": "blue-app", "team_id": blue }),
    )
    .await;
    let (red_text, blue_text) = (
        red_key["key"].as_str().unwrap(),
        blue_key["key"].as_str().unwrap(),
    );
    let blue_id = blue_key["id"].as_str().unwrap();
    assert_eq!(chat(&gw, red_text, "gpt-4.1").await, 200);
    assert_eq!(chat(&gw, blue_text, "claude-x").await, 200);

    let cookie = sign_in(&gw, red_text).await;
    // Wait for both records in the usage log (written in batches).
    let admin = sign_in(&gw, ADMIN_KEY).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = get(&gw, "/requests", Some(&admin)).await;
        if log.matches("data-request-id").count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the records never arrived: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, keys) = get(&gw, "/keys", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(
        keys.contains("red-app") && !keys.contains("blue-app"),
        "{keys}"
    );
    assert!(
        !keys.contains("id=\"create-key\""),
        "no form for a read-only session"
    );
    let (status, log) = get(&gw, "/requests", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(
        log.contains("gpt-4.1") && !log.contains("claude-x"),
        "{log}"
    );
    let (status, _) = get(&gw, &format!("/requests?team={blue}"), Some(&cookie)).await;
    assert_eq!(status, 403);
    let (status, _) = get(&gw, &format!("/keys/{blue_id}"), Some(&cookie)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&gw, &format!("/teams/{blue}"), Some(&cookie)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&gw, "/costs?by=team", Some(&cookie)).await;
    assert_eq!(status, 403);
    let (_, costs) = get(&gw, "/costs.csv?by=model", Some(&cookie)).await;
    assert!(
        costs.contains("gpt-4.1") && !costs.contains("claude-x"),
        "{costs}"
    );
    let (_, overview) = get(&gw, "/", Some(&cookie)).await;
    assert!(!overview.contains("claude-x"), "{overview}");
    // Every change is refused, even with the session's own token.
    let token = csrf(&get(&gw, "/keys", Some(&cookie)).await.1);
    let (status, _) = post(
        &gw,
        "/keys",
        Some(&cookie),
        &[("name", "sneaky"), ("csrf", &token)],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &gw,
        &format!("/keys/{blue_id}/revoke"),
        Some(&cookie),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(chat(&gw, blue_text, "claude-x").await, 200, "still live");
    // A revoked key's session ends with it.
    let (_, red_page) = get(
        &gw,
        &format!("/keys/{}", red_key["id"].as_str().unwrap()),
        Some(&admin),
    )
    .await;
    let admin_token = csrf(&red_page);
    let (status, _) = post(
        &gw,
        &format!("/keys/{}/revoke", red_key["id"].as_str().unwrap()),
        Some(&admin),
        &[("csrf", &admin_token)],
    )
    .await;
    assert_eq!(status, 303);
    let (status, _) = get(&gw, "/", Some(&cookie)).await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn sign_ins_are_limited_per_address() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "ui:\n  sign_in_attempts: 3\n");
    for _ in 0..3 {
        let (status, _) = post(&gw, "/login", None, &[("key", "sk-guess")]).await;
        assert_eq!(status, 401);
    }
    let response = browser()
        .post(gw.url("/ui/login"))
        .header("content-type", FORM)
        .body(encode(&[("key", ADMIN_KEY)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "even the right key waits");
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_session_outlives_a_restart_of_the_gateway() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let cookie = {
        let gw = gateway(&mock, &store, "");
        sign_in(&gw, ADMIN_KEY).await
    };
    let gw = gateway(&mock, &store, "");
    let (status, page) = get(&gw, "/keys", Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn the_playground_chats_through_the_pipeline_as_the_session() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "");
    let limited = admin_json(
        &gw,
        "/admin/keys",
        json!({ "name": "only-gpt", "models": ["gpt-4.1"] }),
    )
    .await;
    let body = json!({ "model": "gpt-4.1", "stream": true, "messages": [{ "role": "user", "content": "hi" }] });
    let send = |cookie: Option<String>, token: Option<String>, body: Value| {
        let mut request = browser().post(gw.url("/ui/playground/chat")).json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    let response = send(None, None, body.clone()).await.unwrap();
    assert_eq!(response.status(), 401);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "invalid_api_key", "{refused}");

    for (key, allowed_other) in [(ADMIN_KEY, true), (limited["key"].as_str().unwrap(), false)] {
        let cookie = sign_in(&gw, key).await;
        let token = csrf(&get(&gw, "/playground", Some(&cookie)).await.1);
        let response = send(Some(cookie.clone()), None, body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "without the CSRF token");
        let response = send(Some(cookie.clone()), Some(token.clone()), body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["x-switchyard-route"]
                .to_str()
                .unwrap()
                .contains("=ok")
        );
        let text = response.text().await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let other =
            json!({ "model": "claude-x", "messages": [{ "role": "user", "content": "hi" }] });
        let response = send(Some(cookie), Some(token), other).await.unwrap();
        assert_eq!(
            response.status() == 200,
            allowed_other,
            "the key's allowed models apply"
        );
    }
    // Recorded as any request: the admin's under `dashboard`, the key's under its name.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage: Value = harness::client()
            .get(gw.url("/admin/usage"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["key_name"].as_str())
            .collect();
        if names.contains(&"dashboard") && names.contains(&"only-gpt") {
            break;
        }
        assert!(Instant::now() < deadline, "{usage}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_dashboard_can_be_moved_or_turned_off() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "ui:\n  path: /dashboard/\n");
    let (status, _) = get(&gw, "/login", None).await;
    assert_eq!(status, 404, "/ui is nothing now");
    let response = browser()
        .get(gw.url("/dashboard/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("action=\"/dashboard/login\"")
    );
    let off = gateway(&mock, &store, "ui:\n  enabled: false\n");
    let (status, body) = get(&off, "/login", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = get(&off, "/", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_requests_page_shows_its_route_and_with_body_logging_its_bodies_redacted() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "telemetry:\n  log_bodies: true\n");
    let made = admin_json(&gw, "/admin/keys", json!({ "name": "app" })).await;
    let key = made["key"].as_str().unwrap();
    let response = harness::client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", "req-dashboard-bodies")
        .json(&json!({ "model": "gpt-4.1", "messages": [{ "role": "user",
            "content": "the weather in Oslo? my key is sk-live-0123456789abcdefghij" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = sign_in(&gw, ADMIN_KEY).await;
    let href = detail_of(&gw, &cookie, "data-request-id=\"req-dashboard-bodies\"").await;
    let (status, page) = get(&gw, &href, Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"route\"") && page.contains("up/mock-1"),
        "the deployment that served: {page}"
    );
    assert!(
        page.contains("the weather in Oslo?"),
        "the prompt is shown: {page}"
    );
    assert!(
        !page.contains("sk-live-0123456789abcdefghij"),
        "the secret is redacted"
    );
    assert!(page.contains("id=\"answer-body\""), "{page}");
    // A key's detail links it; an unknown record is a 404.
    let (status, _) = get(&gw, "/requests/1.ffff", Some(&cookie)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&gw, "/requests/not-a-place", Some(&cookie)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_session_ends_with_what_it_signed_in_with() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "");
    let made = admin_json(&gw, "/admin/keys", json!({ "name": "rotated" })).await;
    let key_session = sign_in(&gw, made["key"].as_str().unwrap()).await;
    let admin_session = sign_in(&gw, ADMIN_KEY).await;
    assert_eq!(get(&gw, "/", Some(&key_session)).await.0, 200);
    // The key's secret rotated out (no grace): its session is over.
    let rotated = harness::client()
        .post(gw.url(&format!(
            "/admin/keys/{}/rotate",
            made["id"].as_str().unwrap()
        )))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "grace": "0s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200, "{}", rotated.text().await.unwrap());
    assert_eq!(get(&gw, "/", Some(&key_session)).await.0, 303);
    assert_eq!(get(&gw, "/", Some(&admin_session)).await.0, 200);
    drop(gw);
    // The admin key changed: the admin's sessions made with the old one are over.
    let changed = harness::gateway(&config_with(
        &mock,
        &store.yaml(),
        "  admin_key: sk-dashboard-admin-rotated",
        "",
    ));
    assert_eq!(get(&changed, "/", Some(&admin_session)).await.0, 303);
}

#[tokio::test]
async fn a_form_sent_from_another_site_is_refused_before_anything_is_read() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(&mock, &store, "");
    let sign_in_from = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = browser()
            .post(gw.url("/ui/login"))
            .header("content-type", FORM)
            .body(encode(&[("key", ADMIN_KEY)]));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
    ] {
        let response = sign_in_from(headers).await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        assert!(response.headers().get("set-cookie").is_none());
    }
    let host = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let same = browser()
        .post(gw.url("/ui/login"))
        .header("content-type", FORM)
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .body(encode(&[("key", ADMIN_KEY)]))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 303, "the dashboard's own page signs in");
}

#[tokio::test]
async fn bodies_past_the_recent_bound_are_not_kept() {
    let mock = harness::mock(&[]);
    let store = TestStore::new(Backend::Sqlite);
    let gw = gateway(
        &mock,
        &store,
        "telemetry:\n  log_bodies: true\n  recent_bodies: 0\n",
    );
    let made = admin_json(&gw, "/admin/keys", json!({ "name": "app" })).await;
    assert_eq!(
        chat(&gw, made["key"].as_str().unwrap(), "gpt-4.1").await,
        200
    );
    let cookie = sign_in(&gw, ADMIN_KEY).await;
    let href = detail_of(&gw, &cookie, "data-request-id").await;
    let (status, page) = get(&gw, &href, Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Not kept here") && !page.contains("id=\"request-body\""),
        "{page}"
    );
}
