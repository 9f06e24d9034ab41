//! The thin async shell around [`decision::decide`]: observe, perform the one cloud call the
//! decision asks for, write the status if it changed, publish events, and hand the finalizer
//! back to kube-runtime's `finalizer` helper.
//!
//! kube-runtime's finalizer helper removes the finalizer on any `Ok` from `Cleanup`, so a
//! release still in progress comes back as [`Error::ReleaseInProgress`], which `error_policy`
//! turns into the requeue the decision asked for (kube-rs/kube#1994).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ecs_client::{Credentials, EcsClient, EcsError, RequestId};
use futures::{Future, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, finalizer},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{info, warn};

use crate::{
    conditions,
    decision::{self, CloudCall, EventSpec, Input, Next, Observation},
    metrics::Metrics,
    pacing::{FailureCounts, Timings},
    resource::{EcsInstance, EcsInstanceStatus, FINALIZER},
};

/// Resources reconciled at once by default. Passes mostly wait on ECS (the rate limiter, the
/// `DescribeInstances` batcher), and the more lookups wait together, the fuller each batch: with
/// 64, deleting 1,000 resources costs about 16 describes per polling round instead of 1,000.
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// The field manager of the controller's status writes.
pub const MANAGER: &str = "ecs-instance-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a failure: the release goes on and the finalizer stays; look again after this.
    #[error("release in progress; next check in {0:?}")]
    ReleaseInProgress(Duration),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// The requeue a release in progress asked for, through the finalizer helper's wrapping.
    fn release_in_progress(&self) -> Option<Duration> {
        match self {
            Error::ReleaseInProgress(delay) => Some(*delay),
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::CleanupFailed(Error::ReleaseInProgress(delay)) => Some(*delay),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub ecs: EcsClient,
    pub recorder: Recorder,
    /// The controller's own credentials (`ALIBABA_CLOUD_*`), for resources without a Secret.
    pub default_credentials: Option<Credentials>,
    pub timings: Timings,
    pub metrics: Arc<Metrics>,
    failures: FailureCounts,
    stop_requests: Mutex<HashMap<ObjectRef<EcsInstance>, Instant>>,
}

impl Context {
    pub fn new(
        client: Client,
        ecs: EcsClient,
        default_credentials: Option<Credentials>,
        timings: Timings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            ecs,
            default_credentials,
            timings,
            metrics,
            failures: FailureCounts::default(),
            stop_requests: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the controller for one namespace (or all) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (instances_api, secrets_api): (Api<EcsInstance>, Api<PartialObjectMeta<Secret>>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    let (reader, writer) = reflector::store();
    // Only changes that matter wake the reconciler: the controller's own status writes do not
    // (they would double the DescribeInstances calls), spec, finalizer and deletion changes do.
    let instances = watcher(instances_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(relevant_change, Default::default());
    // Credentials Secrets: metadata only (no secret data cached), to re-check at once the
    // resources that reference a Secret when it changes or appears.
    let secrets = watcher(secrets_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .touched_objects();
    let store = reader.clone();
    Controller::for_stream(instances, reader)
        .watches_stream(secrets, move |secret| {
            referencing(&store, secret.namespace().as_deref(), &secret.name_any())
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // A release in progress is not a failure: the decision already logged and recorded it.
                Err(controller::Error::ReconcilerFailed(error, _))
                    if error.release_in_progress().is_some() => {}
                Err(error) => warn!(%error, "reconcile failed"),
                Ok(_) => {}
            }
        })
        .await;
}

fn relevant_change(resource: &EcsInstance) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    resource.metadata.generation.hash(&mut hasher);
    resource.metadata.finalizers.hash(&mut hasher);
    resource
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    Some(hasher.finish())
}

fn referencing(
    store: &Store<EcsInstance>,
    namespace: Option<&str>,
    secret: &str,
) -> Vec<ObjectRef<EcsInstance>> {
    store
        .state()
        .iter()
        .filter(|resource| resource.namespace().as_deref() == namespace)
        .filter(|resource| {
            resource
                .spec
                .credentials_ref
                .as_ref()
                .is_some_and(|r| r.name == secret)
        })
        .map(|resource| ObjectRef::from_obj(resource.as_ref()))
        .collect()
}

async fn reconcile(resource: Arc<EcsInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let api: Api<EcsInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, resource, |event| async {
        match event {
            finalizer::Event::Apply(resource) | finalizer::Event::Cleanup(resource) => {
                ctx.pass(&api, &resource).await
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(resource: Arc<EcsInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(delay) = error.release_in_progress() {
        return Action::requeue(delay);
    }
    warn!(%error, resource = %ObjectRef::from_obj(resource.as_ref()), "reconcile error");
    ctx.metrics.reconcile_failed("KubernetesApiError");
    let pace = decision::Pace::Backoff(decision::Backoff::Normal);
    Action::requeue(
        ctx.failures
            .delay(&ctx.timings, &ObjectRef::from_obj(resource.as_ref()), pace),
    )
}

impl Context {
    /// One pass over one resource.
    async fn pass(&self, api: &Api<EcsInstance>, resource: &EcsInstance) -> Result<Action, Error> {
        let object = ObjectRef::from_obj(resource);
        let (observation, credentials) = self.observe(resource).await;
        let stop_recently_requested = self.stop_recently_requested(&object);
        let mut input = Input {
            resource,
            observation: &observation,
            stop_recently_requested,
            call_result: None,
            now: Timestamp::now(),
            observed_at_refresh: signed(self.timings.steady),
            release_timeout: signed(self.timings.release_timeout),
        };
        let mut decision = decision::decide(&input);
        let call_result;
        if let (Some(call), Some(credentials)) = (decision.call.take(), credentials.as_ref()) {
            call_result = self.perform(resource, credentials, &call).await;
            if matches!((&call, &call_result), (CloudCall::Stop(_), Ok(_))) {
                self.stop_requests
                    .lock()
                    .expect("stop requests lock")
                    .insert(object.clone(), Instant::now());
            }
            input.call_result = Some(&call_result);
            input.now = Timestamp::now();
            decision = decision::decide(&input);
        }
        self.write_status(api, resource, &decision.status).await?;
        self.publish(resource, &decision.events).await;
        self.metrics.reconciled();
        for event in decision.events.iter().filter(|e| e.warning) {
            self.metrics.reconcile_failed(&event.reason);
        }
        let deleting = decision::is_deleting(resource);
        match decision.next {
            Next::RemoveFinalizer => {
                if let Some(since) = &resource.metadata.deletion_timestamp {
                    let elapsed = Timestamp::now().duration_since(since.0);
                    self.metrics
                        .released(&object, elapsed.try_into().unwrap_or_default());
                }
                self.failures.forget(&object);
                self.stop_requests
                    .lock()
                    .expect("stop requests lock")
                    .remove(&object);
                info!(resource = %object, "finalizer released");
                Ok(Action::await_change())
            }
            Next::Requeue(pace) => {
                let delay = self.failures.delay(&self.timings, &object, pace);
                let stalled = conditions::is_true(&decision.status.conditions, conditions::STALLED);
                self.metrics.deletion_state(&object, deleting, stalled);
                if deleting {
                    Err(Error::ReleaseInProgress(delay))
                } else {
                    Ok(Action::requeue(delay))
                }
            }
        }
    }

    async fn observe(&self, resource: &EcsInstance) -> (Observation, Option<Credentials>) {
        if decision::is_orphaning(resource) {
            return (Observation::Skipped, None);
        }
        let credentials = match self.credentials(resource).await {
            Ok(credentials) => credentials,
            Err(reason) => return (Observation::CredentialsUnavailable(reason), None),
        };
        let spec = &resource.spec;
        let observation = match self
            .ecs
            .lookup_instance(&spec.region_id, &credentials, &spec.instance_id)
            .await
        {
            Ok(Some(instance)) => Observation::Present(instance),
            Ok(None) => Observation::Absent,
            Err(error) => Observation::Failed(error),
        };
        (observation, Some(credentials))
    }

    /// The resource's Secret (same namespace only), else the controller's own credentials.
    async fn credentials(&self, resource: &EcsInstance) -> Result<Credentials, String> {
        let Some(reference) = &resource.spec.credentials_ref else {
            return self.default_credentials.clone().ok_or_else(|| {
                "no spec.credentialsRef and the controller has no ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET".to_string()
            });
        };
        let namespace = resource.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let secret = match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(format!(
                    "credentials Secret {namespace}/{} not found",
                    reference.name
                ));
            }
            Err(error) => {
                return Err(format!(
                    "credentials Secret {namespace}/{} cannot be read: {error}",
                    reference.name
                ));
            }
        };
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        Credentials::from_secret_data(&data)
            .map_err(|error| format!("credentials Secret {namespace}/{}: {error}", reference.name))
    }

    async fn perform(
        &self,
        resource: &EcsInstance,
        credentials: &Credentials,
        call: &CloudCall,
    ) -> Result<RequestId, EcsError> {
        let region = &resource.spec.region_id;
        info!(resource = %ObjectRef::from_obj(resource), action = call.action(), "calling ECS");
        match call {
            CloudCall::Stop(request) => self.ecs.stop_instance(region, credentials, request).await,
            CloudCall::Delete(request) => {
                self.ecs.delete_instance(region, credentials, request).await
            }
        }
    }

    fn stop_recently_requested(&self, object: &ObjectRef<EcsInstance>) -> bool {
        let stops = self.stop_requests.lock().expect("stop requests lock");
        stops
            .get(object)
            .is_some_and(|at| at.elapsed() < self.timings.stop_grace)
    }

    /// Server-side apply of the whole status, only when it differs from what is stored, so a
    /// steady resource causes no writes.
    async fn write_status(
        &self,
        api: &Api<EcsInstance>,
        resource: &EcsInstance,
        status: &EcsInstanceStatus,
    ) -> Result<(), Error> {
        if resource.status.as_ref() == Some(status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": EcsInstance::api_version(&()),
            "kind": EcsInstance::kind(&()),
            "status": status,
        });
        api.patch_status(
            &resource.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }

    async fn publish(&self, resource: &EcsInstance, events: &[EventSpec]) {
        let reference = resource.object_ref(&());
        for event in events {
            if event.warning {
                warn!(resource = %ObjectRef::from_obj(resource), reason = %event.reason, "{}", event.note);
            } else {
                info!(resource = %ObjectRef::from_obj(resource), reason = %event.reason, "{}", event.note);
            }
            let event = Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.clone(),
                note: Some(truncate(&event.note, 1000)),
                action: event.action.to_string(),
                secondary: None,
            };
            if let Err(error) = self.recorder.publish(&event, &reference).await {
                warn!(%error, reason = %event.reason, "could not publish event");
            }
        }
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

/// Event notes are limited to 1 kB.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
