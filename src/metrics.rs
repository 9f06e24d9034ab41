//! Prometheus metrics (prometheus-client): reconciles and their failures, every ECS API request
//! by action and code with its latency, throttling, release durations, and the deletions that
//! are in progress or blocked right now (in total and by the Stalled reason that blocks them).
//!
//! `deploy/monitoring/` queries these names and labels (alerts and dashboard); `tests/monitoring.rs`
//! fails when one of them is missing from a real run's exposition.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

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

use crate::{
    reasons::{Kind, Reason},
    resource::EcsInstance,
};

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
    leader: Gauge,
    insecure_endpoint: Gauge,
    deletions_blocked_by_reason: Family<ReasonLabels, Gauge>,
    watch_failing: Family<WatchLabels, Gauge>,
    deletions: Mutex<Deletions>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The watched namespace, `*` for a watch of all.
    pub namespace: String,
    /// `ecsinstances` or `secrets`.
    pub resource: String,
}

/// Which resources are being deleted, and which of those need a person (`Stalled`, with the
/// reason that stalls them).
#[derive(Default)]
struct Deletions {
    in_progress: HashSet<ObjectRef<EcsInstance>>,
    blocked: HashMap<ObjectRef<EcsInstance>, String>,
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
        let deletions_blocked_by_reason = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "deletions_blocked_by_reason",
            "Resources being deleted whose release needs a person (Stalled), by Stalled reason",
            deletions_blocked_by_reason.clone(),
        );
        // Every reason that can block a deletion is exposed from the start, at 0: the series
        // exist before the first incident, so alerts and dashboards see 0 rather than nothing.
        for reason in Reason::ALL.iter().filter(|r| r.kind() == Kind::Stalled) {
            deletions_blocked_by_reason
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str().to_string(),
                })
                .set(0);
        }
        let watch_failing = Family::<WatchLabels, Gauge>::default();
        registry.register(
            "watch_failing",
            "1 while the EcsInstance or Secret watch of a namespace (`*`: all) fails, e.g. 403 after its RoleBinding went",
            watch_failing.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (it holds the Lease, or leader election is off)",
            leader.clone(),
        );
        let insecure_endpoint = Gauge::default();
        registry.register(
            "insecure_endpoint",
            "1 when --allow-insecure-endpoint is set: plain HTTP to a non-loopback ECS, STS or metadata endpoint is allowed (test setups only)",
            insecure_endpoint.clone(),
        );
        Metrics {
            leader,
            insecure_endpoint,
            registry,
            reconciles,
            reconcile_failures,
            ecs_requests,
            ecs_request_duration,
            ecs_throttled,
            release_duration,
            deletions_in_progress,
            deletions_blocked,
            deletions_blocked_by_reason,
            watch_failing,
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

    /// Whether the watch of `resource` (`ecsinstances`, `secrets`) in `namespace` fails now.
    pub fn watch_failing(&self, namespace: &str, resource: &str, failing: bool) {
        self.watch_failing
            .get_or_create(&WatchLabels {
                namespace: namespace.to_string(),
                resource: resource.to_string(),
            })
            .set(i64::from(failing));
    }

    /// Whether this replica reconciles now.
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Whether plain HTTP to non-loopback endpoints is allowed (`--allow-insecure-endpoint`).
    pub fn set_insecure_endpoint(&self, allowed: bool) {
        self.insecure_endpoint.set(i64::from(allowed));
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

    /// Where a resource stands in its deletion after a pass: `blocked` is the reason of its
    /// `Stalled=True` condition, if it has one.
    pub fn deletion_state(
        &self,
        object: &ObjectRef<EcsInstance>,
        in_progress: bool,
        blocked: Option<&str>,
    ) {
        let mut deletions = self.deletions.lock().expect("deletions lock");
        set_membership(&mut deletions.in_progress, object, in_progress);
        let was = match blocked.filter(|_| in_progress) {
            Some(reason) => deletions.blocked.insert(object.clone(), reason.to_string()),
            None => deletions.blocked.remove(object),
        };
        self.deletions_in_progress
            .set(deletions.in_progress.len() as i64);
        self.deletions_blocked.set(deletions.blocked.len() as i64);
        // Recount the reason this resource left and the one it is in now (the others stand).
        for reason in was.iter().map(String::as_str).chain(blocked) {
            let count = deletions.blocked.values().filter(|r| *r == reason).count();
            self.deletions_blocked_by_reason
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .set(count as i64);
        }
    }

    /// A resource this process no longer tracks (released, or gone without us).
    pub fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.deletion_state(object, false, None);
    }

    /// The resources counted in the deletion gauges.
    pub fn tracked(&self) -> Vec<ObjectRef<EcsInstance>> {
        let deletions = self.deletions.lock().expect("deletions lock");
        deletions.in_progress.iter().cloned().collect()
    }

    pub fn released(&self, object: &ObjectRef<EcsInstance>, after: Duration) {
        self.release_duration.observe(after.as_secs_f64());
        self.deletion_state(object, false, None);
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
        metrics.deletion_state(&a, true, Some("DependencyViolationRouteEntry"));
        metrics.deletion_state(&b, true, None);
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

    #[test]
    fn the_insecure_endpoint_gauge_is_0_until_the_opt_in() {
        let metrics = Metrics::default();
        let line = |value: u8| format!("\necs_instance_controller_insecure_endpoint {value}\n");
        assert!(metrics.encode().contains(&line(0)), "{}", metrics.encode());
        metrics.set_insecure_endpoint(true);
        assert!(metrics.encode().contains(&line(1)), "{}", metrics.encode());
    }

    fn blocked_by(text: &str, reason: &str) -> i64 {
        let prefix =
            format!(r#"ecs_instance_controller_deletions_blocked_by_reason{{reason="{reason}"}} "#);
        let line = text
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line[prefix.len()..].parse().expect("a gauge value")
    }

    #[test]
    fn blocked_deletions_are_counted_by_reason() {
        let metrics = Metrics::default();
        // Every Stalled reason is there from the start, at 0; no other reason is.
        let text = metrics.encode();
        for reason in Reason::ALL.iter().filter(|r| r.kind() == Kind::Stalled) {
            assert_eq!(blocked_by(&text, reason.as_str()), 0, "{reason:?}");
        }
        assert!(!text.contains(r#"deletions_blocked_by_reason{reason="WaitingForStopped"}"#));

        let [a, b, c] = ["a", "b", "c"].map(|name| ObjectRef::new(name).within("ns"));
        metrics.deletion_state(&a, true, Some("DependencyViolationRouteEntry"));
        metrics.deletion_state(&b, true, Some("DependencyViolationRouteEntry"));
        metrics.deletion_state(&c, true, Some("ReleaseNotConfirmed"));
        let text = metrics.encode();
        assert_eq!(blocked_by(&text, "DependencyViolationRouteEntry"), 2);
        assert_eq!(blocked_by(&text, "ReleaseNotConfirmed"), 1);
        assert!(text.contains("ecs_instance_controller_deletions_blocked 3"));

        // A resource moves to another reason, one is no longer blocked, one is forgotten.
        metrics.deletion_state(&a, true, Some("CredentialsRejected"));
        metrics.deletion_state(&b, true, None);
        metrics.forget(&c);
        let text = metrics.encode();
        assert_eq!(blocked_by(&text, "DependencyViolationRouteEntry"), 0);
        assert_eq!(blocked_by(&text, "CredentialsRejected"), 1);
        assert_eq!(blocked_by(&text, "ReleaseNotConfirmed"), 0);
        assert!(text.contains("ecs_instance_controller_deletions_blocked 1"));
        assert!(text.contains("ecs_instance_controller_deletions_in_progress 2"));

        // Stalled while not being deleted does not count; the release clears the rest.
        metrics.deletion_state(&b, false, Some("InstanceNotFound"));
        assert_eq!(blocked_by(&metrics.encode(), "InstanceNotFound"), 0);
        metrics.released(&a, Duration::from_secs(1));
        let text = metrics.encode();
        assert_eq!(blocked_by(&text, "CredentialsRejected"), 0);
        assert!(text.contains("ecs_instance_controller_deletions_blocked 0"));
        assert!(text.contains("ecs_instance_controller_deletions_in_progress 0"));
    }
}
