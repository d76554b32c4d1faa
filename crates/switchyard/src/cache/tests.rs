#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use switchyard_providers::openai::Usage;

use super::*;
use crate::cache::entry::Form;
use crate::request::RequestRecord;

fn settings() -> config::Cache {
    config::Cache {
        backend: config::CacheBackend::Memory,
        scope: CacheScope::Key,
        ttl: Duration::from_secs(60),
        idle_ttl: None,
        max_ttl: Duration::from_secs(600),
        max_bytes: 16 << 20,
        max_entry_bytes: 1 << 20,
        coalesce: true,
        coalesce_wait: Duration::from_secs(5),
        write_queue: 16,
        semantic_entries: 1000,
        semantic_timeout: Duration::from_secs(1),
    }
}

fn cache() -> Arc<Cache> {
    Arc::new(Cache::new(
        &settings(),
        None,
        ["m"].into_iter(),
        &Metrics::new(),
    ))
}

const MODEL: ModelCache = ModelCache {
    enabled: true,
    ttl: None,
    only_deterministic: false,
    tool_calls: false,
    length: false,
    semantic: None,
};

fn request<'a>(body: &'a str, model: &'a ModelCache, ask: Ask, stream: bool) -> Request<'a> {
    Request {
        ask,
        kind: Kind::CHAT,
        model: ("m", model),
        body: body.as_bytes(),
        extra: b"",
        dialect: Dialect::OpenAi,
        stream,
    }
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// A request that ended with `status`, having used 3 + 2 tokens.
fn record(status: u16) -> RequestRecord {
    let mut record = RequestRecord::new(
        HeaderValue::from_static("id"),
        "chat_completions",
        std::time::Instant::now(),
    );
    record.status = status;
    record.usage = Some(Usage {
        prompt_tokens: 3,
        completion_tokens: 2,
        total_tokens: 5,
        ..Usage::default()
    });
    record
}

async fn miss(cache: &Arc<Cache>, planned: Planned) -> Box<Fill> {
    match cache.lookup(planned).await {
        Looked::Miss(Some(fill)) => fill,
        other => panic!("not a storable miss: {other:?}"),
    }
}

async fn hit(cache: &Arc<Cache>, planned: Planned) -> Option<Arc<Entry>> {
    match cache.lookup(planned).await {
        Looked::Hit { entry, .. } => Some(entry),
        Looked::Miss(_) | Looked::Partial { .. } => None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_stored_is_found_until_its_ttl_runs_out() {
    let cache = cache();
    let plan = || {
        cache.plan(
            &request(CHAT, &MODEL, Ask::default(), false),
            &Principal::Open,
        )
    };
    let mut fill = miss(&cache, plan().unwrap()).await;
    fill.capture(&Bytes::from_static(ANSWER.as_bytes()));
    fill.finish(&record(200), 42);
    let entry = hit(&cache, plan().unwrap()).await.unwrap();
    assert_eq!(entry.body, ANSWER.as_bytes());
    assert_eq!(entry.cost_micros, 42);
    assert_eq!(entry.usage.unwrap().total_tokens, 5);
    tokio::time::advance(Duration::from_millis(59_999)).await;
    assert!(hit(&cache, plan().unwrap()).await.is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(hit(&cache, plan().unwrap()).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_requested_ttl_is_capped_and_zero_stores_nothing() {
    let cache = cache();
    let ask = |seconds| Ask {
        ttl: Some(Duration::from_secs(seconds)),
        ..Ask::default()
    };
    let planned = cache
        .plan(
            &request(CHAT, &MODEL, ask(100_000), false),
            &Principal::Open,
        )
        .unwrap();
    assert_eq!(planned.ttl, Some(Duration::from_secs(600)));
    let planned = cache
        .plan(&request(CHAT, &MODEL, ask(0), false), &Principal::Open)
        .unwrap();
    assert!(matches!(cache.lookup(planned).await, Looked::Miss(None)));
}

#[tokio::test]
async fn errors_oversized_and_cut_answers_are_not_stored() {
    let cache = cache();
    let plan = || {
        cache.plan(
            &request(CHAT, &MODEL, Ask::default(), false),
            &Principal::Open,
        )
    };
    let mut fill = miss(&cache, plan().unwrap()).await;
    fill.capture(&Bytes::from_static(ANSWER.as_bytes()));
    fill.finish(&record(502), 0);
    assert!(hit(&cache, plan().unwrap()).await.is_none());

    let mut fill = miss(&cache, plan().unwrap()).await;
    fill.capture(&Bytes::from(vec![b' '; (1 << 20) + 1]));
    fill.capture(&Bytes::from_static(ANSWER.as_bytes()));
    fill.finish(&record(200), 0);
    assert!(hit(&cache, plan().unwrap()).await.is_none());

    let mut fill = miss(&cache, plan().unwrap()).await;
    fill.capture(&Bytes::from_static(ANSWER.as_bytes()));
    let mut cut = record(200);
    cut.ending = crate::request::Ending::ClientClosed;
    fill.finish(&cut, 0);
    assert!(hit(&cache, plan().unwrap()).await.is_none());
}

#[tokio::test]
async fn length_and_tool_call_answers_are_kept_only_when_the_model_says() {
    let cache = cache();
    for (reason, keep) in [
        (
            "length",
            ModelCache {
                length: true,
                ..MODEL
            },
        ),
        (
            "tool_calls",
            ModelCache {
                tool_calls: true,
                ..MODEL
            },
        ),
    ] {
        let answer = ANSWER.replace("\"stop\"", &format!("\"{reason}\""));
        for (model, stored) in [(MODEL, false), (keep, true)] {
            let body = format!(r#"{{"messages":[],"reason":"{reason}","stored":{stored}}}"#);
            let plan = || {
                cache.plan(
                    &request(&body, &model, Ask::default(), false),
                    &Principal::Open,
                )
            };
            let mut fill = miss(&cache, plan().unwrap()).await;
            fill.capture(&Bytes::from(answer.clone()));
            fill.finish(&record(200), 0);
            assert_eq!(
                hit(&cache, plan().unwrap()).await.is_some(),
                stored,
                "{reason}"
            );
        }
    }
}

#[test]
fn requests_the_cache_does_not_apply_to_bypass_it() {
    let cache = cache();
    let plan = |body: &str, model: &ModelCache, ask: Ask| {
        cache
            .plan(&request(body, model, ask, false), &Principal::Open)
            .err()
    };
    let no_store = Ask {
        no_store: true,
        ..Ask::default()
    };
    assert_eq!(plan(CHAT, &MODEL, no_store), Some(Bypass::NoStore));
    let off = ModelCache {
        enabled: false,
        ..MODEL
    };
    assert_eq!(plan(CHAT, &off, Ask::default()), Some(Bypass::Model));
    assert_eq!(
        plan(r#"{"messages":[],"n":2}"#, &MODEL, Ask::default()),
        Some(Bypass::Choices)
    );
    let strict = ModelCache {
        only_deterministic: true,
        ..MODEL
    };
    assert_eq!(
        plan(
            r#"{"messages":[],"temperature":0.7}"#,
            &strict,
            Ask::default()
        ),
        Some(Bypass::NotDeterministic)
    );
    assert_eq!(
        plan(
            r#"{"messages":[],"temperature":0}"#,
            &strict,
            Ask::default()
        ),
        None
    );
    assert_eq!(
        plan(r#"{"messages":[],"seed":3}"#, &strict, Ask::default()),
        None
    );
    let model = MODEL;
    let legacy = Request {
        kind: Kind::COMPLETIONS,
        ..request(r#"{"prompt":"x"}"#, &model, Ask::default(), true)
    };
    assert_eq!(
        cache.plan(&legacy, &Principal::Open).err(),
        Some(Bypass::Stream)
    );
}

#[test]
fn no_cache_skips_the_lookup_but_stores() {
    let cache = cache();
    let ask = Ask {
        no_cache: true,
        ..Ask::default()
    };
    let planned = cache
        .plan(&request(CHAT, &MODEL, ask, false), &Principal::Open)
        .unwrap();
    assert!(!planned.read);
    assert!(planned.ttl.is_some());
}

#[test]
fn config_keys_never_share_answers_and_global_scope_does() {
    let mut global = settings();
    global.scope = CacheScope::Global;
    let global = Cache::new(&global, None, std::iter::empty(), &Metrics::new());
    let (a, b) = (
        Principal::ConfigKey("a".into()),
        Principal::ConfigKey("b".into()),
    );
    let key = |cache: &Cache, principal: &Principal| {
        cache
            .plan(&request(CHAT, &MODEL, Ask::default(), false), principal)
            .unwrap()
            .key
    };
    let by_key = cache();
    assert_ne!(key(&by_key, &a), key(&by_key, &b));
    assert_eq!(key(&global, &a), key(&global, &b));
}

#[test]
fn the_cache_headers_are_read() {
    let mut ask = Ask::default();
    ask.control(&HeaderValue::from_static("max-age=0, No-Store"));
    assert_eq!(
        ask,
        Ask {
            no_cache: false,
            no_store: true,
            ttl: None,
        }
    );
    ask.control(&HeaderValue::from_static(" no-cache"));
    assert!(ask.no_cache && ask.no_store);
    let ttl = |text| Ask::ttl_of(&HeaderValue::from_static(text));
    assert_eq!(ttl("5m"), Some(Duration::from_secs(300)));
    assert_eq!(ttl(" 90 "), Some(Duration::from_secs(90)));
    assert_eq!(ttl("soon"), None);
}

#[test]
fn an_entry_survives_its_encoding() {
    let entry = Entry {
        body: Bytes::from_static(ANSWER.as_bytes()),
        form: Form::Completion,
        dialect: Dialect::Anthropic,
        usage: Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            ..Usage::default()
        }),
        cost_micros: -5,
        stored_at: 1_700_000_000_000,
    };
    assert_eq!(Entry::decode(Bytes::from(entry.encode())), Some(entry));
    assert_eq!(Entry::decode(Bytes::from_static(b"\x09short")), None);
}

#[tokio::test]
async fn a_stored_stream_replays_as_json_and_a_stored_json_as_a_stream() {
    let cache = cache();
    // A streamed miss, as an OpenAI client got it (usage not asked for).
    let stream = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let plan = |stream| {
        cache.plan(
            &request(CHAT, &MODEL, Ask::default(), stream),
            &Principal::Open,
        )
    };
    let mut fill = miss(&cache, plan(true).unwrap()).await;
    let (head, tail) = stream.split_at(100);
    fill.capture(&Bytes::from_static(head.as_bytes()));
    fill.capture(&Bytes::from_static(tail.as_bytes()));
    fill.finish(&record(200), 7);
    let entry = hit(&cache, plan(false).unwrap()).await.unwrap();
    let json = entry
        .replay(Shape {
            stream: false,
            include_usage: false,
            model: "m",
        })
        .unwrap();
    assert!(!json.stream);
    let answer: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "hello there");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["total_tokens"], 5);
    // Replayed as a stream, with the usage chunk only when asked for.
    for include_usage in [false, true] {
        let replay = entry
            .replay(Shape {
                stream: true,
                include_usage,
                model: "m",
            })
            .unwrap();
        let text = std::str::from_utf8(&replay.body).unwrap();
        assert!(replay.stream);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(text.contains("hello there"), "{text}");
        assert_eq!(text.contains("\"total_tokens\":5"), include_usage, "{text}");
    }
}
