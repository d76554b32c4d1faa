//! The LLM pipeline of one proxied request, as plain async code in one place.
//!
//! Its stages, in order:
//!
//! 1. **admit** — the caller's key becomes a typed [`Principal`]
//!    (401 before the body is read; a virtual key is found in memory,
//!    [`crate::keys`]); a request that has passed too many
//!    gateways is refused as a loop; a key past its own `max_in_flight` is
//!    refused at once (429 with `retry-after`); the request takes a slot among
//!    those in flight, or waits a bounded time for one, or is shed at once
//!    (503 with `retry-after`, [`crate::admission`]).
//! 2. **parse** — the body, bounded in size (413) and time (408), is validated
//!    in the client's dialect; the public model, whether it streams, and a
//!    prompt-size estimate go into the request's context.
//! 3. **route** — `routes:` rules pick the model and strategy, then the plan
//!    orders the deployments of the model and its fallbacks; a virtual
//!    key not allowed the model is refused (403).
//! 4. **cache** — when `cache:` is on, the request's canonical key (scope,
//!    endpoint, routed model, body) is looked up ([`crate::cache`]): a hit
//!    is answered at once, in the shape asked for, and skips 5–6 (no limit
//!    taken, nothing spent); a miss may wait for an identical request in
//!    flight, or carries the fill that stores its answer when it ends whole.
//!    Then `x-switchyard-max-cost` leaves out the deployments estimated
//!    dearer; a model past its own `max_in_flight` is refused at once (503
//!    with `retry-after`); a share of requests is copied to a shadow model.
//! 5. **reserve** — the key's, team's, model's and gateway's requests and
//!    tokens per minute are taken, and the worst-case cost is reserved
//!    against the key's and team's budgets, all or none, in memory
//!    ([`crate::limits`]); over a limit: 429 with `retry-after` and the
//!    `x-ratelimit-*` headers, which every answer under a limit carries.
//!    The reservation settles to the real usage and cost when the request ends.
//! 6. **attempts** — [`execute`] tries the plan: each deployment in turn,
//!    retries, fallbacks, hedges, within the retry budget and one deadline.
//! 7. **respond** — the answer in the client's dialect: relayed as it
//!    arrives, or read whole and translated; the headers say who served and
//!    how (`x-switchyard-provider`, `-model`, `-attempts`, `-route`).
//! 8. **finish** — the request's [`RequestRecord`](crate::request::RequestRecord)
//!    goes to [`Finish`](crate::request::Finish) exactly once, whichever way it
//!    ends: here for an error or a whole answer, when the relayed body ends,
//!    or when the client goes away (the context is dropped).

use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::Response;
use hyper::body::Incoming;

use super::exchange::{self, Forward};
use super::inbound::Inbound;
use super::proxy::ProxyEndpoint;
use super::respond::{self, dropped_header, respond};
use super::{AppState, Settings, embed, read, shadow};
use std::sync::Arc;

use crate::admission::limit::{Limit, LimitError};
use crate::cache::{Ask, Cache, Looked, Probe, Request as CacheRequest, Shape, Status, Stitch};
use crate::error::GatewayError;
use crate::headers::{CACHE, DROPPED_FIELDS, MODEL, PROVIDER};
use crate::keys::{Directory, KeyError};
use crate::limits::budget::micros_per_mtok;
use crate::limits::{self, Demand, LimitRefusal, Reservation};
use crate::request::{Principal, RequestCx};
use crate::routing::strategy::Tokens;
use crate::routing::{Facts, Plan};
use crate::upstream::attempts::{Attempts, Served, execute};

/// Completion tokens assumed for a request, for the `cost` strategy.
const EXPECTED_OUTPUT_TOKENS: u64 = 256;

/// Serves one request to a proxy endpoint (see the stages above).
pub(super) async fn handle(
    state: &AppState,
    endpoint: ProxyEndpoint,
    request: Request<Incoming>,
    request_id: &HeaderValue,
    mut cx: RequestCx,
    signed_in: Option<Principal>,
) -> Response {
    // A reload swaps the settings; this request keeps the ones it began with.
    let settings = state.settings.load_full();
    let limits = settings.limits;

    // 1. admit
    let admitted = match admit(&settings, request.headers(), &state.process.keys, signed_in).await {
        Ok(admitted) => admitted,
        Err(e) => return cx.refuse(&e),
    };
    cx.authenticated(admitted.principal);
    if let Some(tags) = admitted.tags {
        cx.tagged(tags);
    }
    if state.process.traced
        && let Some(parent) = admitted.traceparent
    {
        cx.trace_parent(parent);
    }
    if let Some(limit) = admitted.key_limit {
        match limit.try_take() {
            Some(share) => cx.admitted_for_key(share),
            None => return shed(state, cx, LimitError::Key),
        }
    }
    match state.process.admission.admit().await {
        Ok(slot) => cx.admitted(slot),
        Err(e) => return cx.refuse(&e),
    }

    // 2. parse
    let body = match read::body(request, limits.max_body_bytes, limits.body_timeout).await {
        Ok(body) => body,
        Err(e) => return cx.refuse(&e),
    };
    if let Some(max) = state.process.kept_bodies {
        cx.keep_bodies(&body, max);
    }
    let inbound = match Inbound::parse(endpoint, &body) {
        Ok(inbound) => inbound,
        Err(e) => return cx.refuse(&e),
    };
    // A rough size for the `cost` strategy: four bytes a token, and a typical answer.
    let tokens = Tokens {
        input: body.len() as u64 / 4,
        output: EXPECTED_OUTPUT_TOKENS,
    };
    cx.requested(inbound.model(), inbound.stream(), tokens.input);
    if cx.record().tags.is_none()
        && let Some(tags) = inbound.metadata().and_then(read::tags_in)
    {
        cx.tagged(tags);
    }

    // 3. route
    let routes = &settings.routes;
    let task = admitted.task.or_else(|| {
        routes
            .reads_task()
            .then(|| inbound.metadata().and_then(read::task_in))
            .flatten()
    });
    let (planned, strategy, rule_trace) = {
        let routed = routes.apply(Facts {
            model: inbound.model(),
            task: task.as_deref(),
            prompt_tokens: tokens.input,
            key: cx.principal().key_name(),
        });
        let trace = routed
            .rule
            .map(|rule| format!("routes[{rule}]={}", routed.model));
        (routes.plan(routed.model, tokens), routed.strategy, trace)
    };
    let mut plan = match planned {
        Ok(plan) => plan,
        Err(e) => return cx.refuse(&e),
    };
    cx.routed(&plan.model().meter);
    // The key must allow the name it asked for or the model that serves it
    // (an alias's, or a route rule's); the model's configured fallbacks are
    // part of how it is served.
    let principal = cx.principal();
    if !principal.allows(inbound.model()) && !principal.allows(&plan.model().name) {
        let model = inbound.model().to_owned();
        return cx.refuse(&KeyError::ModelNotAllowed(model).into());
    }
    if let Some(strategy) = strategy {
        plan.use_strategy(strategy);
    }

    // 4. cache
    let (mut cx, cache_status, partial) = match &state.process.cache {
        Some(cache) => {
            let request = CacheRequest {
                ask: admitted.cache,
                kind: endpoint.cache_kind(),
                model: (&plan.model().name, &plan.model().cache),
                body: &body,
                extra: admitted
                    .beta
                    .as_ref()
                    .map_or(&[][..], HeaderValue::as_bytes),
                dialect: cx.dialect(),
                stream: inbound.stream(),
            };
            let embedder = Embedder {
                state,
                settings: &settings,
                request_id,
                hops: &admitted.hops,
            };
            match look_up(cache, &request, &inbound, &embedder, cx).await {
                Ok((cx, status, partial)) => (cx, Some(status), partial),
                Err(hit) => return hit,
            }
        }
        None => (cx, None, None),
    };
    // Some items of an embeddings batch were cached: the others are asked for.
    let (upstream_body, stitch) =
        partial.map_or((None, None), |(body, stitch)| (Some(body), Some(stitch)));
    let mut inbound = match &upstream_body {
        Some(fewer) => match Inbound::parse(endpoint, fewer) {
            Ok(fewer) => fewer,
            Err(e) => return cx.refuse(&e),
        },
        None => inbound,
    };
    if let Some(max) = admitted.max_cost {
        plan.limit_cost(max);
        if !plan.affordable() {
            let model = plan.model().name.clone();
            return cx.refuse(&GatewayError::OverMaxCost { model, max });
        }
    }
    if let Some(limit) = &plan.model().in_flight {
        match limit.try_take() {
            Some(share) => cx.admitted_for_model(share),
            None => return shed(state, cx, LimitError::Model(plan.model().name.clone())),
        }
    }
    // 5. reserve
    let snapshot = match reserve(state, &cx, &plan, &inbound, tokens.input).await {
        Ok(Some(reservation)) => {
            let snapshot = reservation.snapshot();
            cx.reserved(reservation);
            Some(snapshot)
        }
        Ok(None) => None,
        Err(e) => return cx.refuse(&e.into()),
    };
    plan.prompt(&body);
    let mut attempts = Attempts::new(
        &settings.retries,
        &state.process.retries,
        &plan,
        inbound.stream(),
    );
    if let Some(trace) = rule_trace {
        attempts.routed_by(trace);
    }
    let forward = Forward {
        request_id,
        beta: admitted.beta,
        hops: admitted.hops,
        limits,
        cut: &state.process.cut,
        whole: stitch.is_some(),
    };
    if let Some(shadow) = &plan.model().shadow {
        shadow::copy(routes, shadow, &mut inbound, tokens, &forward);
    }

    // 6. attempts
    let served = execute(
        &mut attempts,
        &mut plan,
        |target| inbound.call(target),
        |target, call, sent, deadline| {
            exchange::attempt(
                &forward,
                target,
                forward.outgoing(call, sent, deadline),
                call.shape(),
            )
        },
    )
    .await;
    let Served {
        pick,
        call,
        answer,
        sent,
        deadline,
        in_flight,
    } = match served {
        Ok(served) => served,
        Err(e) => {
            if let GatewayError::OverLimit(limit) = &e {
                state.process.admission.shed(limit);
            }
            let trace = attempts.conclude(&mut cx);
            let mut response = cx.refuse(&e);
            if let Some(snapshot) = &snapshot {
                limits::headers::write(snapshot, response.headers_mut());
            }
            if let Some(status) = cache_status {
                response
                    .headers_mut()
                    .insert(CACHE.clone(), status.header());
            }
            return trace.apply(response);
        }
    };

    // 7. respond (and 8. finish, when the answer ends)
    let target = pick.target;
    cx.served_by(&target.provider.name, &target.upstream_model);
    cx.serving_since(sent.into_std());
    cx.priced(target.rates().cloned());
    if !std::ptr::eq(pick.model, plan.model()) {
        cx.fallen_back_from(plan.model().list_price().cloned());
    }
    cx.hold(in_flight);
    let trace = attempts.conclude(&mut cx);
    let mut response = match &stitch {
        Some(stitch) => respond::stitched(answer, stitch, target.rates(), cx),
        None => respond(answer, target, call.dialect, &forward, deadline, cx),
    };
    let headers = response.headers_mut();
    headers.insert(PROVIDER.clone(), target.provider_header.clone());
    headers.insert(MODEL.clone(), target.model_header.clone());
    if !call.dropped.is_empty() {
        headers.insert(DROPPED_FIELDS.clone(), dropped_header(&call.dropped));
    }
    if let Some(snapshot) = &snapshot {
        limits::headers::write(snapshot, headers);
    }
    if let Some(status) = cache_status {
        headers.insert(CACHE.clone(), status.header());
    }
    trace.apply(response)
}

/// Some items of an embeddings batch were cached: the body asking for the
/// others, and the stitch of their answer.
type Partial = (bytes::Bytes, Box<Stitch>);

/// Stage 4: looks the request up. A hit is answered here (`Err`, the
/// response); otherwise the context goes on with what the cache made of
/// the request, carrying the fill of a miss that may be stored.
async fn look_up(
    cache: &Arc<Cache>,
    request: &CacheRequest<'_>,
    inbound: &Inbound<'_>,
    embedder: &Embedder<'_>,
    mut cx: RequestCx,
) -> Result<(RequestCx, Status, Option<Partial>), Response> {
    let planned = match cache.plan(request, cx.principal()) {
        Ok(planned) => planned,
        Err(_) => {
            cache.count(Status::Bypass, request.model.0, None);
            cx.cache(Status::Bypass);
            return Ok((cx, Status::Bypass, None));
        }
    };
    let shape = Shape {
        stream: inbound.stream(),
        include_usage: inbound.include_usage(),
        model: inbound.model(),
    };
    let (fill, partial) = match cache.lookup(planned).await {
        Looked::Hit { entry, .. } => {
            // An entry that cannot be read back is a miss.
            if let Some(replay) = entry.replay(shape) {
                cache.count(Status::Hit, request.model.0, Some(&entry));
                return Err(respond::cached(&entry, replay, None, cx));
            }
            (None, None)
        }
        Looked::Miss(Some(mut fill)) if fill.probe().is_some() => {
            if let Some(probe) = fill.probe().cloned() {
                // The embedding is a provider's time, not the gateway's.
                let asked = std::time::Instant::now();
                let embedded = embedder.embed(cache, &probe).await;
                cx.waited(asked.elapsed());
                if let Some(vector) = embedded {
                    if let Some((entry, score)) = cache.nearest(&probe, &vector).await
                        && let Some(replay) = entry.replay(shape)
                    {
                        cache.count(Status::Semantic, request.model.0, Some(&entry));
                        fill.answered_by(entry.clone());
                        return Err(respond::cached(&entry, replay, Some(score), cx));
                    }
                    fill.remember(vector);
                }
            }
            (Some(fill), None)
        }
        Looked::Miss(fill) => (fill, None),
        Looked::Partial { body, stitch } => (None, Some((body, stitch))),
    };
    cache.count(Status::Miss, request.model.0, None);
    cx.cache(Status::Miss);
    if let Some(fill) = fill {
        cx.filling(fill);
    }
    Ok((cx, Status::Miss, partial))
}

/// What the semantic cache needs to embed a prompt through the gateway's
/// own routes.
struct Embedder<'a> {
    state: &'a AppState,
    settings: &'a Settings,
    request_id: &'a HeaderValue,
    hops: &'a HeaderValue,
}

impl Embedder<'_> {
    /// The embedding of `probe`'s text, within the cache's semantic timeout.
    async fn embed(&self, cache: &Cache, probe: &Probe) -> Option<Vec<f32>> {
        let forward = Forward {
            request_id: self.request_id,
            beta: None,
            hops: self.hops.clone(),
            limits: self.settings.limits,
            cut: &self.state.process.cut,
            whole: true,
        };
        let semantic = &probe.settings;
        // Boxed: an embedding is a whole upstream call, whose future would
        // otherwise sit inside every request's, cache hit or not, and be
        // copied with it (8 KB more per request).
        let embedding = Box::pin(embed::embed(
            self.state,
            self.settings,
            &forward,
            &semantic.embedding_model,
            &probe.text,
            semantic.dimensions,
        ));
        let embedded = tokio::time::timeout(cache.semantic_timeout(), embedding)
            .await
            .ok()
            .flatten();
        if embedded.is_none() {
            cache.embedding_failed();
        }
        embedded
    }
}

/// Stage 5: takes the request's rate limits and reserves its worst-case
/// cost against its budgets, when any apply (`None` when none does).
async fn reserve(
    state: &AppState,
    cx: &RequestCx,
    plan: &Plan<'_>,
    inbound: &Inbound<'_>,
    prompt_tokens: u64,
) -> Result<Option<Reservation>, LimitRefusal> {
    let tenant = match cx.principal() {
        Principal::VirtualKey(tenant) => Some(tenant),
        Principal::Anonymous | Principal::Open | Principal::ConfigKey(_) => None,
    };
    let limiter = &state.process.limits;
    let model = &plan.model().name;
    if !limiter.applies(tenant, model) {
        return Ok(None);
    }
    let dearest = plan.dearest();
    let asked = inbound.max_output_tokens();
    let demand = Demand {
        tenant,
        model,
        tokens: prompt_tokens + asked.unwrap_or(0),
        prompt_tokens,
        max_output_tokens: asked.unwrap_or(u64::from(dearest.max_output_tokens)),
        input_price: micros_per_mtok(dearest.input),
        output_price: micros_per_mtok(dearest.output),
    };
    limiter.reserve(&demand).await.map(Some)
}

/// Refuses a request past its key's or its model's in-flight limit, counted
/// in `switchyard_requests_shed_total`.
fn shed(state: &AppState, cx: RequestCx, limit: LimitError) -> Response {
    state.process.admission.shed(&limit);
    cx.refuse(&limit.into())
}

/// What admission found in a request's headers.
struct Admitted<'s> {
    principal: Principal,
    /// The in-flight limit of the caller's key, if it has one.
    key_limit: Option<&'s Limit>,
    /// `x-switchyard-hops` for the provider.
    hops: HeaderValue,
    /// The client's `anthropic-beta` (Anthropic clients), for Anthropic providers.
    beta: Option<HeaderValue>,
    /// `x-switchyard-task`.
    task: Option<String>,
    /// `x-switchyard-max-cost`, in USD.
    max_cost: Option<f64>,
    /// `cache-control` and `x-switchyard-cache-ttl`.
    cache: Ask,
    /// `x-switchyard-tags`.
    tags: Option<HeaderValue>,
    /// `traceparent`.
    traceparent: Option<HeaderValue>,
}

/// Stage 1: who the caller is, and the headers that decide the request's
/// way; refused before the body is read.
async fn admit<'s>(
    settings: &'s Settings,
    headers: &HeaderMap,
    keys: &Directory,
    signed_in: Option<Principal>,
) -> Result<Admitted<'s>, GatewayError> {
    // The dashboard's playground: the caller is the session's, known already.
    let caller = match signed_in {
        Some(principal) => crate::auth::Caller {
            principal,
            limit: None,
        },
        None => settings.auth.authenticate(headers, keys).await?,
    };
    let steering = read::Steering::of(headers);
    Ok(Admitted {
        principal: caller.principal,
        key_limit: caller.limit,
        hops: steering.hops(settings.limits.max_hops)?,
        beta: steering.anthropic_beta(headers),
        task: steering.task(),
        max_cost: steering.max_cost()?,
        cache: steering.cache,
        tags: steering.tags.cloned(),
        traceparent: steering.traceparent.cloned(),
    })
}
