//! What the response cache costs on the request path, with its memory tier:
//! `cargo bench -p switchyard --bench cache`. Issue 16 asks a memory hit to be
//! answered in under 50 µs; this is the cache's own share of that, without
//! the HTTP around it (bench/run.sh measures the whole request).
//!
//! - `digest`: the canonical key digest of `bench/payloads/chat.json` (the
//!   ~2 KB four-message body the load benchmark sends), chat's ignored
//!   fields left out;
//! - `plan`: [`Cache::plan`], the digest and the key of that request, and
//!   the model's and the request's cache rules;
//! - `hit_json`, `hit_stream`: a memory hit as the pipeline makes it — plan,
//!   [`Cache::lookup`], the entry replayed (JSON as stored, or re-encoded as
//!   an SSE stream) and counted;
//! - `miss_and_store_json`, `miss_and_store_stream`: a miss of a body never
//!   seen before — plan, lookup (the memory tier misses, the request leads
//!   its flight), the answer captured and stored as the request ends (a
//!   stream's events read back into the completion they add up to, as the
//!   gateway stores a streamed answer).
//!
//! The cache's settings come from the config a gateway would load with
//! `cache: { backend: memory }`, so every default is the gateway's.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use divan::{Bencher, black_box};
use futures_util::FutureExt;
use switchyard::cache::{Ask, Cache, Kind, Looked, Request, Shape, Status};
use switchyard::config::{self, ModelCache, Source};
use switchyard::error::Dialect;
use switchyard::request::{Ending, Principal, RequestRecord};
use switchyard::telemetry::metrics::Metrics;
use switchyard_providers::openai::Usage;

fn main() {
    divan::main();
}

/// The body bench/run.sh sends.
const BODY: &[u8] = include_bytes!("../../../bench/payloads/chat.json");

/// The mock's answer to it (the last user message echoed), as the gateway
/// relays it.
const ANSWER: &str = r#"{"id":"chatcmpl-mock-4","object":"chat.completion","created":1796546527,"model":"mock-1","choices":[{"index":0,"message":{"role":"assistant","content":"echo: Thanks. If we go with flat shunting, how many cuts would you plan for the 42 wagons given that road 3 can only take 14 wagons and roads 4 and 5 take 20 each? Please list the cuts with their destination roads and the order in which the pilot should move them, and point out anything that would need a second crew.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":310,"completion_tokens":63,"total_tokens":373,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

const MODEL: &str = "gpt-4.1";

/// The gateway config of bench/gateway-config.sh, reduced to what the
/// cache reads, with `cache: { backend: memory }`.
const CONFIG: &str = "\
server:
  listen: 127.0.0.1:0
auth:
  mode: keys
keys:
  - name: bench
    key: sk-bench-client-key
providers:
  upstream:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key: sk-bench-upstream-key
models:
  gpt-4.1:
    deployments:
      - { provider: upstream, model: mock-1, price: { input: 2.0, output: 8.0 } }
cache:
  backend: memory
";

/// A cache as the gateway builds it from [`CONFIG`], the model's cache
/// rules, and the caller (the config key `bench`).
struct World {
    cache: Arc<Cache>,
    model: ModelCache,
    principal: Principal,
}

fn world() -> World {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(CONFIG.as_bytes()).unwrap();
    let checked = config::load(&Source::File(file.path().to_owned()));
    let config = checked
        .config
        .unwrap_or_else(|| panic!("the bench config is invalid: {:?}", checked.problems));
    let settings = config.cache.as_ref().expect("cache: is on");
    let model = config.models[MODEL].cache.clone();
    let cache = Arc::new(Cache::new(
        settings,
        None,
        [MODEL].into_iter(),
        &Metrics::new(),
    ));
    World {
        cache,
        model,
        principal: Principal::ConfigKey(Arc::from("bench")),
    }
}

impl World {
    fn request<'a>(&'a self, body: &'a [u8], stream: bool) -> Request<'a> {
        Request {
            ask: Ask::default(),
            kind: Kind::CHAT,
            model: (MODEL, &self.model),
            body,
            extra: &[],
            dialect: Dialect::OpenAi,
            stream,
        }
    }

    /// Looks `body` up; on a miss, stores the answer `parts` add up to (as
    /// sent to the client: JSON, or a stream's events) the way a whole
    /// answer is stored when its request ends. Returns whether it was a hit.
    fn serve(&self, body: &[u8], stream: bool, parts: &[Bytes], record: &RequestRecord) -> bool {
        let planned = self
            .cache
            .plan(&self.request(body, stream), &self.principal)
            .unwrap();
        match self.cache.lookup(planned).now_or_never().unwrap() {
            Looked::Hit { .. } => true,
            Looked::Miss(fill) => {
                let mut fill = fill.expect("a miss of a storable request fills");
                for part in parts {
                    fill.capture(part);
                }
                fill.finish(record, 1234);
                false
            }
            Looked::Partial { .. } => panic!("a chat request is not an embeddings batch"),
        }
    }

    /// A hit as the pipeline answers it: planned, looked up, replayed in
    /// the shape asked for, counted.
    fn hit(&self, stream: bool) -> Bytes {
        let request = self.request(black_box(BODY), stream);
        let planned = self.cache.plan(&request, &self.principal).unwrap();
        let Looked::Hit { entry, .. } = self.cache.lookup(planned).now_or_never().unwrap() else {
            panic!("not a hit");
        };
        let shape = Shape {
            stream,
            include_usage: false,
            model: MODEL,
        };
        let replay = entry.replay(shape).expect("the entry reads back");
        self.cache.count(Status::Hit, MODEL, Some(&entry));
        replay.body
    }
}

/// The record of a request that ended whole, as a miss's fill reads it.
fn completed() -> RequestRecord {
    let mut record = RequestRecord::new(
        axum::http::HeaderValue::from_static("bench"),
        "chat_completions",
        Instant::now(),
    );
    record.status = 200;
    record.ending = Ending::Completed;
    record.usage = Some(Usage {
        prompt_tokens: 310,
        completion_tokens: 63,
        total_tokens: 373,
        ..Usage::default()
    });
    record
}

#[divan::bench]
fn digest(bencher: Bencher) {
    bencher.bench_local(|| switchyard::cache::digest(black_box(BODY), Kind::CHAT.ignored).unwrap());
}

#[divan::bench]
fn plan(bencher: Bencher) {
    let world = world();
    bencher.bench_local(|| {
        world
            .cache
            .plan(&world.request(black_box(BODY), false), &world.principal)
            .unwrap()
    });
}

/// [`ANSWER`] as the client got it: one JSON part.
fn json_parts() -> Vec<Bytes> {
    vec![Bytes::from_static(ANSWER.as_bytes())]
}

/// [`ANSWER`] as the mock streams it, one part an event: the role, a chunk
/// a word, the finish, `[DONE]` (66 events, about 14 KB, as in bench/run.sh).
fn stream_parts() -> Vec<Bytes> {
    let answer: serde_json::Value = serde_json::from_str(ANSWER).unwrap();
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    let event = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-mock-5\",\"object\":\"chat.completion.chunk\",\"created\":1796554197,\
             \"model\":\"mock-1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\
             \"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        ))
    };
    let mut parts = vec![event(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    )];
    let mut start = 0;
    for (at, _) in text.match_indices(' ').chain([(text.len(), "")]) {
        let word = serde_json::to_string(&text[start..at]).unwrap();
        parts.push(event(&format!(r#"{{"content":{word}}}"#), "null"));
        start = at;
    }
    parts.push(event("{}", r#""stop""#));
    parts.push(Bytes::from_static(b"data: [DONE]\n\n"));
    parts
}

#[divan::bench]
fn hit_json(bencher: Bencher) {
    let world = world();
    assert!(!world.serve(BODY, false, &json_parts(), &completed()));
    bencher.bench_local(|| world.hit(false));
}

#[divan::bench]
fn hit_stream(bencher: Bencher) {
    let world = world();
    assert!(!world.serve(BODY, false, &json_parts(), &completed()));
    bencher.bench_local(|| world.hit(true));
}

/// Misses of bodies never seen before, each answered with `parts`: [`BODY`]
/// with its last user message ended by a counter, as bench/chat.lua's
/// VARY_TAG does (built outside the timed part).
fn misses(bencher: Bencher, stream: bool, parts: &[Bytes]) {
    let world = world();
    let record = completed();
    let text = std::str::from_utf8(BODY).unwrap().trim_end();
    let end = text
        .rfind("\"}],")
        .expect("the last message ends the messages");
    let (before, after) = text.split_at(end);
    // The answer is stored: the same body again hits.
    let check = format!("{before} (bench check){after}").into_bytes();
    assert!(!world.serve(&check, stream, parts, &record));
    assert!(
        world.serve(&check, stream, parts, &record),
        "the answer was not stored"
    );
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            format!("{before} (bench {n:010}){after}").into_bytes()
        })
        .bench_local_refs(|body| assert!(!world.serve(body, stream, parts, &record)));
}

#[divan::bench]
fn miss_and_store_json(bencher: Bencher) {
    misses(bencher, false, &json_parts());
}

#[divan::bench]
fn miss_and_store_stream(bencher: Bencher) {
    let parts = stream_parts();
    misses(bencher, true, &parts);
}
