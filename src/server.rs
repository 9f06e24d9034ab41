//! The operational HTTP endpoints: Prometheus metrics, liveness and readiness.

use std::{
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

/// Whether the resource watches work: `/healthz` fails once they have been failing for longer
/// than the threshold, so a controller whose watch cannot recover gets restarted.
#[derive(Clone, Default)]
pub struct WatchHealth(Arc<Mutex<Option<Instant>>>);

impl WatchHealth {
    /// A watch answered: healthy again.
    pub fn succeeded(&self) {
        *self.0.lock().expect("watch health lock") = None;
    }

    /// A watch failed; the first failure of a run starts the clock.
    pub fn failed(&self) {
        self.0
            .lock()
            .expect("watch health lock")
            .get_or_insert_with(Instant::now);
    }

    /// How long the watches have been failing, if they are.
    pub fn failing_for(&self) -> Option<Duration> {
        self.0
            .lock()
            .expect("watch health lock")
            .map(|since| since.elapsed())
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
    match health.watch.failing_for() {
        Some(down) if down > health.unhealthy_after => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the EcsInstance watch has been failing for {}s",
                down.as_secs()
            ),
        ),
        _ => (StatusCode::OK, "ok".to_string()),
    }
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.readiness.0.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
