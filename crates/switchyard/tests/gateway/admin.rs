//! The admin API and `/metrics`.

use serde_json::Value;

use crate::harness::*;

const ADMIN_KEY: &str = "sk-admin-test";

/// Model `m` on two deployments of one mock, with the admin API on.
fn admin_gateway(mock: &Process, admin_key: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {admin_key}\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    deployments:\n      - {{ provider: up, model: a, weight: 3 }}\n      - {{ provider: up, model: b }}\n",
        mock.url("/v1")
    ))
}

async fn admin_get(gw: &Process, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = client().get(gw.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn deployments_are_listed_for_the_admin_only() {
    let mock = mock(&[]);
    let gw = admin_gateway(&mock, ADMIN_KEY);
    let listed = admin_get(&gw, "/admin/deployments", Some(ADMIN_KEY)).await;
    assert_eq!(listed.status(), 200);
    let body: Value = listed.json().await.unwrap();
    let m = &body["models"][0];
    assert_eq!(m["model"], "m");
    assert_eq!(m["strategy"], "weighted");
    assert_eq!(m["deployments"][0]["deployment"], "up/a");
    assert_eq!(m["deployments"][0]["weight"], 3);
    assert_eq!(m["deployments"][0]["circuit"], "closed");
    assert_eq!(m["deployments"][1]["deployment"], "up/b");

    for key in [None, Some(CLIENT_KEY), Some("sk-admin-tes")] {
        let refused = admin_get(&gw, "/admin/deployments", key).await;
        assert_eq!(refused.status(), 401, "{key:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    // The client key does not open the admin API, nor the admin key the proxy.
    let proxy = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ADMIN_KEY)
        .json(&chat("hi", Value::Null))
        .send()
        .await
        .unwrap();
    assert_eq!(proxy.status(), 401);
}

#[tokio::test]
async fn without_an_admin_key_the_admin_api_does_not_exist() {
    let mock = mock(&[]);
    let gw = admin_gateway(&mock, "\"\"");
    let off = admin_get(&gw, "/admin/deployments", Some("")).await;
    assert_eq!(off.status(), 404);
}

#[tokio::test]
async fn metrics_show_each_deployments_circuit() {
    let mock = mock(&[]);
    let gw = admin_gateway(&mock, ADMIN_KEY);
    let response = admin_get(&gw, "/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"switchyard_circuit_state{model="m",deployment="up/a"} 0"#),
        "{text}"
    );
}
