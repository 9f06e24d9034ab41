//! Prometheus metrics (prometheus-client): reconciles and their failures, every ECS API request
//! by action and code with its latency, throttling, release durations, and the deletions that
//! are in progress or blocked right now.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use ecs_client::RequestObserver;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::resource::EcsInstance;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub action: String,
    /// The API code, `OK` on success, or a transport label (`Timeout`, `ConnectionFailed`, …).
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_failures: Family<ReasonLabels, Counter>,
    ecs_requests: Family<RequestLabels, Counter>,
    ecs_request_duration: Family<ActionLabels, Histogram>,
    ecs_throttled: Family<ActionLabels, Counter>,
    release_duration: Histogram,
    deletions_in_progress: Gauge,
    deletions_blocked: Gauge,
    deletions: Mutex<Deletions>,
}

/// Which resources are being deleted, and which of those need a person (`Stalled`).
#[derive(Default)]
struct Deletions {
    in_progress: HashSet<ObjectRef<EcsInstance>>,
    blocked: HashSet<ObjectRef<EcsInstance>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ecs_instance_controller");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        let reconcile_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconcile passes that ended in an error, by condition reason",
            reconcile_failures.clone(),
        );
        let ecs_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ecs_requests",
            "ECS API requests (HTTP attempts) by action and outcome code",
            ecs_requests.clone(),
        );
        let ecs_request_duration = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 13))
        });
        registry.register_with_unit(
            "ecs_request_duration",
            "ECS API request latency by action",
            prometheus_client::registry::Unit::Seconds,
            ecs_request_duration.clone(),
        );
        let ecs_throttled = Family::<ActionLabels, Counter>::default();
        registry.register(
            "ecs_throttled",
            "ECS API answers of Throttling* by action",
            ecs_throttled.clone(),
        );
        let release_duration = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register_with_unit(
            "release_duration",
            "From the resource's deletion timestamp to the removal of its finalizer",
            prometheus_client::registry::Unit::Seconds,
            release_duration.clone(),
        );
        let deletions_in_progress = Gauge::default();
        registry.register(
            "deletions_in_progress",
            "Resources being deleted, finalizer still held",
            deletions_in_progress.clone(),
        );
        let deletions_blocked = Gauge::default();
        registry.register(
            "deletions_blocked",
            "Resources being deleted whose release needs a person (Stalled)",
            deletions_blocked.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_failures,
            ecs_requests,
            ecs_request_duration,
            ecs_throttled,
            release_duration,
            deletions_in_progress,
            deletions_blocked,
            deletions: Mutex::new(Deletions::default()),
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    pub fn reconcile_failed(&self, reason: &str) {
        self.reconcile_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Where a resource stands in its deletion after a pass.
    pub fn deletion_state(
        &self,
        object: &ObjectRef<EcsInstance>,
        in_progress: bool,
        blocked: bool,
    ) {
        let mut deletions = self.deletions.lock().expect("deletions lock");
        set_membership(&mut deletions.in_progress, object, in_progress);
        set_membership(&mut deletions.blocked, object, in_progress && blocked);
        self.deletions_in_progress
            .set(deletions.in_progress.len() as i64);
        self.deletions_blocked.set(deletions.blocked.len() as i64);
    }

    /// A resource this process no longer tracks (released, or gone without us).
    pub fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.deletion_state(object, false, false);
    }

    /// The resources counted in the deletion gauges.
    pub fn tracked(&self) -> Vec<ObjectRef<EcsInstance>> {
        let deletions = self.deletions.lock().expect("deletions lock");
        deletions.in_progress.iter().cloned().collect()
    }

    pub fn released(&self, object: &ObjectRef<EcsInstance>, after: Duration) {
        self.release_duration.observe(after.as_secs_f64());
        self.deletion_state(object, false, false);
    }
}

fn set_membership(
    set: &mut HashSet<ObjectRef<EcsInstance>>,
    object: &ObjectRef<EcsInstance>,
    member: bool,
) {
    if member {
        set.insert(object.clone());
    } else {
        set.remove(object);
    }
}

impl RequestObserver for Metrics {
    fn on_request(&self, action: &str, outcome_code: Option<&str>, latency: Duration) {
        let code = bounded_code(outcome_code).to_string();
        self.ecs_requests
            .get_or_create(&RequestLabels {
                action: action.to_string(),
                code,
            })
            .inc();
        self.ecs_request_duration
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    fn on_throttled(&self, action: &str) {
        self.ecs_throttled
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc();
    }
}

/// The `code` label: `OK`, a code of the error table, a transport label, or `Other`, so that a
/// misbehaving endpoint inventing codes cannot grow the metric without bound.
fn bounded_code(outcome_code: Option<&str>) -> &str {
    const TRANSPORT: &[&str] = &[
        "Timeout",
        "ConnectionFailed",
        "TransportError",
        "InvalidResponse",
        "InvalidRequest",
    ];
    match outcome_code {
        None => "OK",
        Some(code)
            if TRANSPORT.contains(&code) || ecs_client::ErrorClass::of_code(code).is_some() =>
        {
            code
        }
        Some(_) => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_deletions_and_releases_are_exposed() {
        let metrics = Metrics::default();
        metrics.on_request(
            "DeleteInstance",
            Some("DependencyViolation.RouteEntry"),
            Duration::from_millis(20),
        );
        metrics.on_request("DescribeInstances", None, Duration::from_millis(5));
        metrics.on_request(
            "DescribeInstances",
            Some("Made.Up.1"),
            Duration::from_millis(5),
        );
        metrics.on_throttled("DescribeInstances");
        let a = ObjectRef::new("a").within("ns");
        let b = ObjectRef::new("b").within("ns");
        metrics.deletion_state(&a, true, true);
        metrics.deletion_state(&b, true, false);
        metrics.released(&b, Duration::from_secs(3));
        metrics.reconcile_failed("DependencyViolationRouteEntry");
        let text = metrics.encode();
        for line in [
            r#"ecs_instance_controller_ecs_requests_total{action="DeleteInstance",code="DependencyViolation.RouteEntry"} 1"#,
            r#"ecs_instance_controller_ecs_requests_total{action="DescribeInstances",code="OK"} 1"#,
            r#"ecs_instance_controller_ecs_requests_total{action="DescribeInstances",code="Other"} 1"#,
            r#"ecs_instance_controller_ecs_throttled_total{action="DescribeInstances"} 1"#,
            r#"ecs_instance_controller_reconcile_failures_total{reason="DependencyViolationRouteEntry"} 1"#,
            "ecs_instance_controller_deletions_in_progress 1",
            "ecs_instance_controller_deletions_blocked 1",
            "ecs_instance_controller_release_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
