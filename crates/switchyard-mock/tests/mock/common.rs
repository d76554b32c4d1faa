//! Starting a mock on a random loopback port, and reading its answers.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use switchyard_mock::MockOptions;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A mock served on `127.0.0.1:0`, stopped when dropped.
pub struct Mock {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A streamed response, read to its end.
#[derive(Debug)]
pub struct Sse {
    /// The `data:` payloads, in order, with when each arrived (since the request was sent).
    pub events: Vec<(String, Duration)>,
    /// The error that ended the body early, if one did.
    pub error: Option<String>,
}

impl Sse {
    pub fn data(&self) -> Vec<&str> {
        self.events.iter().map(|(data, _)| data.as_str()).collect()
    }

    /// The JSON events (everything but `[DONE]`).
    pub fn json(&self) -> Vec<Value> {
        self.data()
            .into_iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}")))
            .collect()
    }
}

pub async fn start(options: MockOptions) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_mock::serve(listener, options, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    Mock {
        base,
        client,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A mock that fails every request with `status` (and `retry_after`, which goes with 429).
pub async fn failing(status: u16, retry_after: Option<u64>) -> Mock {
    start(MockOptions {
        error_rate: 1.0,
        error_status: status,
        retry_after,
        ..MockOptions::default()
    })
    .await
}

impl Mock {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` and returns the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.post(path, body).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// POSTs `body`, expects a 200 event stream and reads it to its end (or error).
    pub async fn post_sse(&self, path: &str, body: &Value) -> Sse {
        let sent = Instant::now();
        let response = self.post(path, body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        read_sse(response, sent).await
    }

    /// Stops the server and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve did not return")
            .unwrap()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Reads a streamed body to its end: its text, and the error that ended it early, if one did.
pub async fn read_raw(response: reqwest::Response) -> (String, Option<String>) {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(e) => return (text, Some(format!("{e:?}"))),
        }
    }
    (text, None)
}

/// Expects a 200 event stream, reads it to its end and splits it into its events (each
/// without `separator`); the text after the last separator is allowed only in a body that
/// ended with the error returned.
pub async fn read_events(
    response: reqwest::Response,
    separator: &str,
) -> (Vec<String>, Option<String>) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (text, error) = read_raw(response).await;
    let mut events: Vec<String> = text.split(separator).map(str::to_owned).collect();
    let rest = events.pop().unwrap_or_default();
    assert!(
        error.is_some() || rest.is_empty(),
        "partial event: {rest:?}"
    );
    (events, error)
}

pub async fn read_sse(response: reqwest::Response, start: Instant) -> Sse {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let mut error = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .trim_end_matches('\n');
            assert!(!data.contains('\n'), "multi-line event {event:?}");
            events.push((data.to_owned(), start.elapsed()));
        }
    }
    assert!(
        error.is_some() || buffer.is_empty(),
        "a partial event at the end: {buffer:?}"
    );
    Sse { events, error }
}

/// A chat request with one user message.
pub fn chat(text: &str) -> Value {
    serde_json::json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": text}],
    })
}

/// `body` with `"stream": true` (and more fields merged in).
pub fn streaming(mut body: Value, extra: Value) -> Value {
    body["stream"] = Value::Bool(true);
    if let Value::Object(extra) = extra {
        body.as_object_mut().unwrap().extend(extra);
    }
    body
}
