//! Start-up and shutdown: providers, the listener, signals and the grace period.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::serve::ListenerExt;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::config::{Config, ProviderKind};
use crate::routing::Routes;
use crate::upstream::ProviderClient;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A provider's HTTP client could not be built.
    #[error("cannot set up provider `{provider}`: {source}")]
    Client {
        /// Provider name.
        provider: String,
        /// What failed.
        source: crate::upstream::ClientError,
    },
    /// The in-process mock provider could not start.
    #[error("cannot start the in-process mock provider: {0}")]
    Mock(std::io::Error),
}

/// Runs the gateway until SIGTERM or SIGINT, then drains within `server.shutdown_grace`.
pub async fn run(config: Config) -> Result<(), StartError> {
    let internal = CancellationToken::new();
    let clients = provider_clients(&config, &internal).await?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = Arc::new(AppState {
        routes: Routes::new(&config, &clients),
        auth: Authenticator::new(config.auth, &config.keys),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: config.server.body_timeout,
        max_stream_event_bytes: config.server.max_stream_event_bytes,
        ready: ready.clone(),
        models_body: models_body(&config),
    });
    announce(addr);
    tracing::info!(%addr, providers = clients.len(), models = config.models.len(), auth = ?config.auth, "switchyard is serving");

    let grace = config.server.shutdown_grace;
    let stopping = CancellationToken::new();
    // Small responses must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(stopping.clone().cancelled_owned());
    let signals = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            ready.store(false, Ordering::Relaxed);
            tracing::info!(grace = ?grace, "shutdown: no new connections; waiting for in-flight requests");
            stopping.cancel();
            tokio::time::sleep(grace).await;
        }
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "the server stopped with an error");
            }
            tracing::info!("shutdown complete");
        }
        () = signals => tracing::warn!(grace = ?grace, "shutdown grace period over; cutting the requests still in flight"),
    }
    internal.cancel();
    Ok(())
}

/// The machine-readable start-up line on stdout (logs go to stderr).
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// One client per provider; `mock` providers are started in this process first.
async fn provider_clients(
    config: &Config,
    internal: &CancellationToken,
) -> Result<HashMap<String, Arc<ProviderClient>>, StartError> {
    let mut clients = HashMap::new();
    for provider in config.providers.values() {
        let base_url = if provider.kind == ProviderKind::Mock {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(StartError::Mock)?;
            let addr = listener.local_addr().map_err(StartError::Mock)?;
            let stop = internal.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) =
                    switchyard_mock::serve(listener, switchyard_mock::MockOptions::default(), stop)
                        .await
                {
                    tracing::error!(error = %e, "the in-process mock provider stopped");
                }
            });
            Some(format!("http://{addr}/v1"))
        } else {
            None
        };
        let client =
            ProviderClient::new(provider, base_url).map_err(|source| StartError::Client {
                provider: provider.name.clone(),
                source,
            })?;
        clients.insert(provider.name.clone(), Arc::new(client));
    }
    Ok(clients)
}

fn models_body(config: &Config) -> Bytes {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let data: Vec<serde_json::Value> = config
        .models
        .keys()
        .map(|name| serde_json::json!({ "id": name, "object": "model", "created": created, "owned_by": "switchyard" }))
        .collect();
    Bytes::from(serde_json::json!({ "object": "list", "data": data }).to_string())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the gateway");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Waits for SIGTERM or SIGINT (used by `switchyard mock` too).
pub async fn wait_for_shutdown_signal() {
    shutdown_signal().await;
}
