#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Mutex;

use axum::http::StatusCode;
use http_body_util::BodyExt;

use super::*;

/// Keeps every record it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<RequestRecord>>);

impl Consumer for Recorder {
    fn consume(&self, record: &RequestRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

fn cx(dialect: Dialect) -> (RequestCx, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let finish = Arc::new(Finish::new(vec![recorder.clone()]));
    let cx = RequestCx::new(
        HeaderValue::from_static("req-1"),
        "messages",
        dialect,
        Instant::now(),
        finish,
    );
    (cx, recorder)
}

fn records(recorder: &Recorder) -> Vec<RequestRecord> {
    recorder.0.lock().unwrap().clone()
}

#[test]
fn each_ending_is_recorded_once() {
    let (mut ok, recorder) = cx(Dialect::OpenAi);
    ok.set_status(200);
    ok.complete();
    assert_eq!(records(&recorder).len(), 1);
    assert_eq!(records(&recorder)[0].outcome(), "ok");

    let (refused, recorder) = cx(Dialect::OpenAi);
    let response = refused.refuse(&GatewayError::ModelNotFound("nope".into()));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let [record] = records(&recorder).try_into().unwrap();
    assert_eq!((record.status, record.ending), (404, Ending::Failed));
    assert_eq!(record.outcome(), "model_not_found");

    let (mut cut, recorder) = cx(Dialect::OpenAi);
    cut.set_status(200);
    cut.break_off("upstream_protocol", "the stream broke off");
    let [record] = records(&recorder).try_into().unwrap();
    assert_eq!((record.status, record.ending), (200, Ending::Failed));
    assert_eq!(record.error.unwrap().detail, "the stream broke off");

    let (gone, recorder) = cx(Dialect::OpenAi);
    drop(gone);
    let [record] = records(&recorder).try_into().unwrap();
    assert_eq!(record.ending, Ending::ClientClosed);
    assert_eq!(record.outcome(), "client_disconnected");
}

#[tokio::test]
async fn a_panic_is_recorded_once_and_answered_in_the_clients_dialect() {
    let (cx, recorder) = cx(Dialect::Anthropic);
    let dialect = cx.dialect();
    let handled = catch_panic(async move {
        let _cx = cx;
        tokio::task::yield_now().await;
        panic!("a bug");
    })
    .await;
    panic_settled();
    assert!(handled.is_none());
    let [record] = records(&recorder).try_into().unwrap();
    assert_eq!((record.status, record.ending), (500, Ending::Panicked));
    assert_eq!(record.outcome(), "internal_error");

    // What the gateway's service answers for it.
    let response = GatewayError::Internal.to_response_in(dialect);
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
}

#[tokio::test]
async fn a_future_that_does_not_panic_keeps_its_output() {
    let (cx, recorder) = cx(Dialect::OpenAi);
    let output = catch_panic(async move {
        cx.complete();
        7
    })
    .await;
    panic_settled();
    assert_eq!(output, Some(7));
    assert_eq!(records(&recorder)[0].ending, Ending::Completed);
    // The flag of a caught panic is cleared for the next request.
    let (gone, recorder) = super::tests::cx(Dialect::OpenAi);
    drop(gone);
    assert_eq!(records(&recorder)[0].ending, Ending::ClientClosed);
}

#[tokio::test]
async fn a_stream_that_panics_ends_with_one_panicked_item_and_records_the_panic() {
    use futures_util::StreamExt as _;
    let (cx, recorder) = cx(Dialect::OpenAi);
    // Yields one item, then panics while polled for the next, holding `cx`.
    let stream = futures_util::stream::unfold((0, cx), |(polls, cx)| async move {
        if polls == 1 {
            tokio::task::yield_now().await;
            panic!("a bug in a relay");
        }
        Some((polls, (polls + 1, cx)))
    });
    let items: Vec<_> = catch_stream_panic(stream).collect().await;
    assert_eq!(items, [Ok(0), Err(Panicked)]);
    let [record] = records(&recorder).try_into().unwrap();
    assert_eq!((record.status, record.ending), (500, Ending::Panicked));
    // The flag of the caught panic is cleared for the next request.
    let (gone, recorder) = super::tests::cx(Dialect::OpenAi);
    drop(gone);
    assert_eq!(records(&recorder)[0].ending, Ending::ClientClosed);
}

#[tokio::test]
async fn the_key_and_model_shares_are_given_back_however_the_request_ends() {
    use crate::admission::limit::Counts;
    let mut counts = Counts::default();
    let (key, model) = (counts.limit("key", 1), counts.limit("model", 1));
    let hold = |cx: &mut RequestCx| {
        cx.admitted_for_key(key.try_take().unwrap());
        cx.admitted_for_model(model.try_take().unwrap());
        assert!(key.try_take().is_none() && model.try_take().is_none());
    };
    // Completed, refused, and dropped (the client gone).
    let (mut done, _) = cx(Dialect::OpenAi);
    hold(&mut done);
    done.complete();
    let (mut refused, _) = cx(Dialect::OpenAi);
    hold(&mut refused);
    drop(refused.refuse(&GatewayError::Internal));
    let (mut gone, _) = cx(Dialect::OpenAi);
    hold(&mut gone);
    drop(gone);
    // Panicked.
    let (mut panicked, recorder) = cx(Dialect::OpenAi);
    hold(&mut panicked);
    let handled = catch_panic(async move {
        let _cx = panicked;
        tokio::task::yield_now().await;
        panic!("a bug in a handler");
    })
    .await;
    panic_settled();
    assert!(handled.is_none());
    assert_eq!(records(&recorder)[0].ending, Ending::Panicked);
    assert!(key.try_take().is_some() && model.try_take().is_some());
}
