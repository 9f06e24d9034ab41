//! The operational HTTP endpoints: Prometheus metrics, liveness and readiness.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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

/// Binds both listeners first (so a taken port fails start-up), then serves until `shutdown`.
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    let health_listener = tokio::net::TcpListener::bind(health_addr).await?;
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    let health_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(readiness);
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

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.0.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
