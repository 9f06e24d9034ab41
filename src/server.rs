//! The operational HTTP endpoints: Prometheus metrics, liveness and readiness.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get,
};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Ready once the controller runs (or stands by for the Lease).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether the resource watches work, per watched namespace (`*` for a watch of all). `/healthz`
/// fails only once every watch has been failing for longer than the threshold: a restart helps
/// when the API server cannot be reached, not when one namespace's RoleBinding went, so one bad
/// namespace never restarts the controller for the others (design.md §7); it is named in the
/// `/healthz` body, the log and the `watch_failing` metric instead.
#[derive(Clone, Default)]
pub struct WatchHealth(Arc<Mutex<BTreeMap<String, Option<Failing>>>>);

#[derive(Clone)]
struct Failing {
    since: Instant,
    error: String,
}

impl WatchHealth {
    /// The watch of `namespace` answered: healthy again.
    pub fn succeeded(&self, namespace: &str) {
        self.0
            .lock()
            .expect("watch health lock")
            .insert(namespace.to_string(), None);
    }

    /// The watch of `namespace` failed; its first failure in a row starts its clock.
    pub fn failed(&self, namespace: &str, error: &str) {
        let mut watches = self.0.lock().expect("watch health lock");
        let state = watches.entry(namespace.to_string()).or_insert(None);
        match state {
            Some(failing) => failing.error = error.to_string(),
            None => {
                *state = Some(Failing {
                    since: Instant::now(),
                    error: error.to_string(),
                })
            }
        }
    }

    /// How long every watch has been failing, if they all are.
    pub fn failing_for(&self) -> Option<Duration> {
        let watches = self.0.lock().expect("watch health lock");
        let mut shortest: Option<Duration> = None;
        for state in watches.values() {
            let down = state.as_ref()?.since.elapsed();
            shortest = Some(shortest.map_or(down, |s| s.min(down)));
        }
        shortest
    }

    /// `namespace: error (since Ns)` for each failing watch.
    pub fn failing(&self) -> Vec<String> {
        let watches = self.0.lock().expect("watch health lock");
        watches
            .iter()
            .filter_map(|(namespace, state)| {
                let failing = state.as_ref()?;
                Some(format!(
                    "{namespace}: {} (for {}s)",
                    failing.error,
                    failing.since.elapsed().as_secs()
                ))
            })
            .collect()
    }
}

#[derive(Clone)]
struct Health {
    readiness: Readiness,
    watch: WatchHealth,
    unhealthy_after: Duration,
}

/// Binds both listeners first (so a taken port fails start-up), then serves until `shutdown`.
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    watch: WatchHealth,
    unhealthy_after: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    let health_listener = tokio::net::TcpListener::bind(health_addr).await?;
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    let health_app = Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .with_state(Health {
            readiness,
            watch,
            unhealthy_after,
        });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let served = tokio::try_join!(
            axum::serve(metrics_listener, metrics_app)
                .with_graceful_shutdown(stop.clone().cancelled_owned()),
            axum::serve(health_listener, health_app).with_graceful_shutdown(stop.cancelled_owned()),
        );
        if let Err(error) = served {
            tracing::error!(%error, "HTTP endpoints failed");
        }
    });
    Ok(())
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn live(State(health): State<Health>) -> impl IntoResponse {
    let failing = health.watch.failing();
    match health.watch.failing_for() {
        Some(down) if down > health.unhealthy_after => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "every EcsInstance watch has been failing for {}s: {}",
                down.as_secs(),
                failing.join("; ")
            ),
        ),
        _ if failing.is_empty() => (StatusCode::OK, "ok".to_string()),
        // Some namespaces cannot be watched: the others work, so no restart; say which.
        _ => (
            StatusCode::OK,
            format!("ok; these watches fail: {}", failing.join("; ")),
        ),
    }
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.readiness.0.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
