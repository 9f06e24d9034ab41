//! The thin async shell around [`decision`]: find the owner of the instance among the cached
//! resources, observe, perform the one cloud call the plan asks for, write the status if it
//! changed, publish events, and add or remove the finalizer.
//!
//! The finalizer is managed here rather than by kube-runtime's `finalizer` helper, which removes
//! it on any `Ok` from cleanup (kube-rs/kube#1994): a release in progress is simply a requeue.
//! Both patches are JSON patches with a `test` of the finalizer list or of our entry's index, so
//! a concurrent change makes them fail instead of overwriting it (crossplane does the same).

use std::{
    collections::{HashMap, HashSet},
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
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    conditions,
    decision::{self, CloudCall, CredentialsSource, Decision, EventSpec, Input, Next, Plan},
    metrics::Metrics,
    pacing::{FailureCounts, Timings},
    reasons::{RECHECK_ANNOTATION, Reason},
    resource::{EcsInstance, EcsInstanceStatus, FINALIZER, ReleaseRecord},
    server::WatchHealth,
};

/// Resources reconciled at once by default. Passes mostly wait on ECS (the rate limiter, the
/// `DescribeInstances` batcher), and the more lookups wait together, the fuller each batch: with
/// 64, deleting 1,000 resources costs about 16 describes per polling round instead of 1,000.
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// The field manager of the controller's status writes.
pub const MANAGER: &str = "ecs-instance-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the resource cache stopped")]
    CacheStopped,
}

/// Who may use the controller's own credentials (SPEC §3 "Ownership", shared clusters).
#[derive(Debug, Clone, Default)]
pub struct CredentialsPolicy {
    /// Every resource must name its own Secret (`--require-credentials-ref`).
    pub require_credentials_ref: bool,
    /// Only these namespaces may use the controller's own credentials (`None`: all).
    pub own_credentials_namespaces: Option<HashSet<String>>,
}

/// What this process remembers of a resource between passes, for what the status may not show
/// yet. Keyed by object, checked against the UID so a recreated resource starts afresh.
#[derive(Default)]
struct Memory {
    uid: Option<String>,
    /// When a `StopInstance` was last accepted.
    stop_requested_at: Option<Instant>,
    /// An accepted `DeleteInstance`, kept until the finalizer is gone: if the status write that
    /// records it fails, the next pass still knows, and never sends a second one.
    accepted_release: Option<ReleaseRecord>,
}

/// The gist of the last note of a reason, and the recorder its events fold into.
type NoteRecorder = (String, Recorder);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub ecs: EcsClient,
    reporter: Reporter,
    /// kube's `Recorder` folds the events of one (object, reason, action) into a series that
    /// keeps the first note, which would hide a later, different error of the same reason. So a
    /// note whose gist differs from the last one of its reason gets a recorder (an Event) of its
    /// own, and repeats of it still fold into that one's series.
    recorders: Mutex<HashMap<(ObjectRef<EcsInstance>, Reason), NoteRecorder>>,
    /// The controller's own credentials (`ALIBABA_CLOUD_*`), for resources without a Secret.
    pub default_credentials: Option<Credentials>,
    pub policy: CredentialsPolicy,
    pub timings: Timings,
    pub metrics: Arc<Metrics>,
    pub watch_health: WatchHealth,
    failures: FailureCounts,
    memory: Mutex<HashMap<ObjectRef<EcsInstance>, Memory>>,
    /// The caches of every loop: ownership is decided across all watched namespaces.
    stores: Mutex<Vec<Store<EcsInstance>>>,
    secrets: SecretCache,
}

/// Parsed credentials Secrets, so a pass does not GET its Secret every time (1,000 deleting
/// resources polled every 3 s would be hundreds of GETs a second). Each change the Secrets
/// watch reports bumps the Secret's epoch; an entry counts only for the epoch it was read in, and
/// a read that raced with a change is not kept. Secret data lives only here, never logged.
#[derive(Default)]
struct SecretCache(Mutex<HashMap<(String, String), SecretEntry>>);

#[derive(Default)]
struct SecretEntry {
    epoch: u64,
    credentials: Option<(u64, Credentials)>,
}

impl SecretCache {
    fn changed(&self, namespace: &str, name: &str) {
        let mut cache = self.0.lock().expect("secret cache lock");
        let entry = cache
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        entry.epoch += 1;
        entry.credentials = None;
    }

    /// The cached credentials, or the epoch a fresh read starts in.
    fn get(&self, namespace: &str, name: &str) -> Result<Credentials, u64> {
        let cache = self.0.lock().expect("secret cache lock");
        match cache.get(&(namespace.to_string(), name.to_string())) {
            Some(SecretEntry {
                epoch,
                credentials: Some((read_in, credentials)),
            }) if read_in == epoch => Ok(credentials.clone()),
            Some(entry) => Err(entry.epoch),
            None => Err(0),
        }
    }

    fn put(&self, namespace: &str, name: &str, read_in: u64, credentials: &Credentials) {
        let mut cache = self.0.lock().expect("secret cache lock");
        let entry = cache
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        if entry.epoch == read_in {
            entry.credentials = Some((read_in, credentials.clone()));
        }
    }
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
            reporter,
            recorders: Mutex::new(HashMap::new()),
            client,
            ecs,
            default_credentials,
            policy: CredentialsPolicy::default(),
            timings,
            metrics,
            watch_health: WatchHealth::default(),
            failures: FailureCounts::default(),
            memory: Mutex::new(HashMap::new()),
            stores: Mutex::new(Vec::new()),
            secrets: SecretCache::default(),
        }
    }

    pub fn with_policy(mut self, policy: CredentialsPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reports the watches' health to this handle (the one `/healthz` reads).
    pub fn with_watch_health(mut self, health: WatchHealth) -> Self {
        self.watch_health = health;
        self
    }
}

/// A watch that comes back quickly after an API server outage: one backoff per watch, from
/// 0.5 s to at most 5 s (kube's default grows to 30 s). backon's jitter adds up to the delay
/// itself, so the delays are 0.5–1 s, 1–2 s, 2–4 s, then 2.5–5 s.
fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_millis(2500))
        .with_jitter()
        .without_max_times()
        .into()
}

/// Paces a watch's retries with [`watch_backoff`], the only delay a watch error causes (the
/// controller adds none: [`NoTriggerBackoff`]). A 410 Gone (the API server no longer has our
/// resourceVersion, as after its restart) re-lists at once, unless the last one came less than
/// [`REGONE_WITHIN`] ago (no tight list loop); the backoff starts over once the watch delivers
/// objects again (not on `Init`, which kube-runtime emits before the list). An error passes
/// through at once (health, logs); the pause comes before the next poll.
fn paced<K: Send + 'static>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send {
    use kube::runtime::utils::Backoff;
    let start = (Box::pin(stream), watch_backoff(), None, None::<Instant>);
    futures::stream::unfold(
        start,
        |(mut stream, mut backoff, pause, mut gone)| async move {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            let item = stream.next().await?;
            let pause = match &item {
                Ok(watcher::Event::Init) => None,
                Ok(_) => {
                    backoff.reset();
                    None
                }
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    let again = gone.is_some_and(|at| at.elapsed() < REGONE_WITHIN);
                    gone = Some(Instant::now());
                    if again { backoff.next() } else { None }
                }
                Err(_) => backoff.next(),
            };
            Some((item, (stream, backoff, pause, gone)))
        },
    )
}

/// A 410 Gone this soon after the last one is paced like any other error.
const REGONE_WITHIN: Duration = Duration::from_secs(30);

/// The controller's backoff over the merged watch streams, which kube-runtime adds by default
/// (0.8 s doubling to 30 s, reset only by an event that passes the filters): on top of each
/// watch's own it stacked to 54–60 s before the watches resumed after an API server restart.
/// The watches pace themselves ([`paced`]), so this adds nothing.
struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
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
    ctx.stores.lock().expect("stores lock").push(reader.clone());
    let watching = ctx.clone();
    let swept = reader.clone();
    // Only changes that matter wake the reconciler: the controller's own status writes do not
    // (they would double the DescribeInstances calls); spec, finalizer, deletion and the recheck
    // annotation do. Deletions of resources clean what this process remembers of them.
    // The cache keeps no `managedFields`: they are most of an object's size and never read.
    let config = watcher::Config::default().any_semantic();
    let instances = paced(watcher(instances_api, config.clone()))
        .modify(|resource| resource.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| watching.on_watch_event(event, &swept))
        .applied_objects()
        .predicate_filter(relevant_change, Default::default());
    // Credentials Secrets: metadata only (no secret data cached), to re-check at once the
    // resources that reference a Secret when it changes or appears.
    let secrets = paced(watcher(secrets_api, config)).touched_objects();
    let store = reader.clone();
    let secret_cache = ctx.clone();
    Controller::for_stream(instances, reader)
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            secret_cache
                .secrets
                .changed(namespace.as_deref().unwrap_or_default(), &secret.name_any());
            referencing(&store, namespace.as_deref(), &secret.name_any())
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                match error {
                    // Already logged and counted by `error_policy`.
                    controller::Error::ReconcilerFailed(..) => {}
                    error => warn!(%error, "controller"),
                }
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
    resource
        .annotations()
        .get(RECHECK_ANNOTATION)
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
    // Ownership is decided on the whole cache: never before the first complete list.
    let stores = ctx.stores.lock().expect("stores lock").clone();
    for store in &stores {
        store
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheStopped)?;
    }
    let api: Api<EcsInstance> = Api::namespaced(
        ctx.client.clone(),
        &resource.namespace().unwrap_or_default(),
    );
    let has_finalizer = resource.finalizers().iter().any(|f| f == FINALIZER);
    match (decision::is_deleting(&resource), has_finalizer) {
        (false, false) => {
            add_finalizer(&api, &resource).await?;
            // The finalizer change wakes the reconciler again.
            Ok(Action::await_change())
        }
        (true, false) => {
            ctx.forget(&ObjectRef::from_obj(resource.as_ref()));
            Ok(Action::await_change())
        }
        (_, true) => ctx.pass(&api, &resource, &stores).await,
    }
}

fn error_policy(resource: Arc<EcsInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(resource.as_ref());
    warn!(%error, resource = %object, "reconcile error");
    ctx.metrics.reconcile_failed("KubernetesApiError");
    let pace = decision::Pace::Backoff(decision::Backoff::Normal);
    // Kubernetes API failures come and go with the API server (a restart, a conflict): retry
    // soon, never after the long backoff cap, which would hold deletions long after an outage.
    Action::requeue(
        ctx.failures
            .delay(&ctx.timings, &object, pace)
            .min(KUBE_RETRY_CAP),
    )
}

/// The longest wait after a failed Kubernetes API call.
const KUBE_RETRY_CAP: Duration = Duration::from_secs(10);

/// Whether the object goes away with the finalizer about to be removed (ours is the last one)
/// while its status already records the accepted release with its RequestId: a final status
/// written now would never be read (the final event says the same), so it is one Kubernetes
/// write per release saved. With other finalizers the object stays, so its status must say that
/// the release is confirmed.
fn vanishes_with_recorded_release(
    resource: &EcsInstance,
    stored: Option<&EcsInstanceStatus>,
    next: &Next,
) -> bool {
    *next == Next::RemoveFinalizer
        && resource.finalizers() == [FINALIZER]
        && stored
            .and_then(|status| status.release.as_ref())
            .is_some_and(|release| release.request_id.is_some())
}

async fn add_finalizer(api: &Api<EcsInstance>, resource: &EcsInstance) -> Result<(), Error> {
    let operations = if resource.finalizers().is_empty() {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    } else {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": resource.finalizers() },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ])
    };
    json_patch(api, resource, operations).await
}

async fn remove_finalizer(api: &Api<EcsInstance>, resource: &EcsInstance) -> Result<(), Error> {
    let Some(index) = resource.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let operations = json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]);
    json_patch(api, resource, operations).await
}

async fn json_patch(
    api: &Api<EcsInstance>,
    resource: &EcsInstance,
    operations: serde_json::Value,
) -> Result<(), Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(operations).expect("the operations are a valid JSON patch");
    api.patch(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

impl Context {
    /// One pass over one resource that holds our finalizer.
    async fn pass(
        &self,
        api: &Api<EcsInstance>,
        resource: &EcsInstance,
        stores: &[Store<EcsInstance>],
    ) -> Result<Action, Error> {
        let object = ObjectRef::from_obj(resource);
        let (decision, written) = match owner_of(stores, resource) {
            Some(owner) => (
                decision::duplicate(resource, &owner, Timestamp::now()),
                None,
            ),
            None => self.decide(api, resource, &object).await?,
        };
        // Compared with what is stored now: the release intent, if this pass wrote one.
        let stored = written.as_ref().or(resource.status.as_ref());
        let changed = if vanishes_with_recorded_release(resource, stored, &decision.next) {
            false
        } else {
            self.write_status(api, resource, stored, &decision.status)
                .await?
        };
        self.publish(resource, &decision.events).await;
        self.metrics.reconciled();
        for event in decision.events.iter().filter(|e| e.warning) {
            self.metrics.reconcile_failed(event.reason.as_str());
        }
        let deleting = decision::is_deleting(resource);
        let reason = decision.reason().unwrap_or_default();
        match decision.next {
            Next::RemoveFinalizer => {
                remove_finalizer(api, resource).await?;
                if let Some(since) = &resource.metadata.deletion_timestamp {
                    let elapsed = Timestamp::now().duration_since(since.0);
                    self.metrics
                        .released(&object, elapsed.try_into().unwrap_or_default());
                }
                self.forget(&object);
                info!(resource = %object, reason, "finalizer removed");
                Ok(Action::await_change())
            }
            Next::Requeue(pace) => {
                let delay = self.failures.delay(&self.timings, &object, pace);
                let stalled = conditions::is_true(&decision.status.conditions, conditions::STALLED);
                self.metrics
                    .deletion_state(&object, deleting, stalled.then_some(reason));
                if changed && deleting {
                    info!(resource = %object, reason, next_check = ?delay, "deletion in progress");
                } else {
                    debug!(resource = %object, reason, next_check = ?delay, "pass done");
                }
                Ok(Action::requeue(delay))
            }
        }
    }

    /// Observe, plan, make the one call the plan asks for, conclude. Also returns the status
    /// written on the way (the release intent), if any.
    async fn decide(
        &self,
        api: &Api<EcsInstance>,
        resource: &EcsInstance,
        object: &ObjectRef<EcsInstance>,
    ) -> Result<(Decision, Option<EcsInstanceStatus>), Error> {
        let source = match &resource.spec.credentials_ref {
            Some(reference) => CredentialsSource::Secret(format!(
                "{}/{}",
                resource.namespace().unwrap_or_default(),
                reference.name
            )),
            None => CredentialsSource::Controller,
        };
        let credentials = self.credentials(resource).await;
        let observation = match &credentials {
            Err(why) => decision::Observation::CredentialsUnavailable(why.clone()),
            Ok(credentials) => {
                let spec = &resource.spec;
                match self
                    .ecs
                    .lookup_instance(&spec.region_id, credentials, &spec.instance_id)
                    .await
                {
                    Ok(Some(instance)) => decision::Observation::Present(instance),
                    Ok(None) => decision::Observation::Absent,
                    Err(error) => decision::Observation::Failed(error),
                }
            }
        };
        let (stop_recently_requested, remembered_release) = self.remembered(resource, object);
        let mut input = Input {
            resource,
            observation: &observation,
            credentials_source: &source,
            access_key_id: credentials.as_ref().ok().map(Credentials::access_key_id),
            stop_recently_requested,
            remembered_release: remembered_release.as_ref(),
            now: Timestamp::now(),
            observed_at_refresh: signed(self.timings.steady),
            release_timeout: signed(self.timings.release_timeout),
            resend_after: signed(self.timings.release_resend),
        };
        let call = match decision::plan(&input) {
            Plan::Done(decision) => return Ok((decision, None)),
            Plan::Call(call) => call,
        };
        let mut written = None;
        if let CloudCall::Delete(_) = call {
            // No DeleteInstance without a trace of it in the status first.
            let intent = decision::with_release_intent(resource, Timestamp::now());
            self.write_status(api, resource, resource.status.as_ref(), &intent)
                .await?;
            written = Some(intent);
        }
        let result = match &credentials {
            Ok(credentials) => self.perform(resource, credentials, &call).await,
            Err(_) => unreachable!("a call is planned only after an observation with credentials"),
        };
        self.remember(resource, object, &call, &result);
        input.now = Timestamp::now();
        Ok((decision::conclude(&input, &call, &result), written))
    }

    /// The resource's Secret (same namespace only), else the controller's own credentials, as
    /// the credentials policy allows.
    async fn credentials(&self, resource: &EcsInstance) -> Result<Credentials, String> {
        let namespace = resource.namespace().unwrap_or_default();
        let Some(reference) = &resource.spec.credentials_ref else {
            if self.policy.require_credentials_ref {
                return Err(
                    "this controller requires spec.credentialsRef (--require-credentials-ref)"
                        .to_string(),
                );
            }
            if let Some(allowed) = &self.policy.own_credentials_namespaces
                && !allowed.contains(&namespace)
            {
                return Err(format!(
                    "namespace {namespace} may not use the controller's own credentials (--own-credentials-namespaces); set spec.credentialsRef"
                ));
            }
            return self.default_credentials.clone().ok_or_else(|| {
                "no spec.credentialsRef and the controller has no ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET".to_string()
            });
        };
        let epoch = match self.secrets.get(&namespace, &reference.name) {
            Ok(credentials) => return Ok(credentials),
            Err(epoch) => epoch,
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let secret = match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err("the Secret does not exist".to_string()),
            Err(error) => return Err(format!("the Secret cannot be read: {error}")),
        };
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        let credentials =
            Credentials::from_secret_data(&data).map_err(|error| error.to_string())?;
        self.secrets
            .put(&namespace, &reference.name, epoch, &credentials);
        Ok(credentials)
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
            CloudCall::Tag(request) => self.ecs.tag_instance(credentials, request).await,
            CloudCall::Untag(request) => self.ecs.untag_instance(credentials, request).await,
        }
    }

    /// (a stop was accepted moments ago, an accepted release) for this resource.
    fn remembered(
        &self,
        resource: &EcsInstance,
        object: &ObjectRef<EcsInstance>,
    ) -> (bool, Option<ReleaseRecord>) {
        let memory = self.memory.lock().expect("memory lock");
        match memory.get(object).filter(|m| m.uid == resource.uid()) {
            Some(m) => (
                m.stop_requested_at
                    .is_some_and(|at| at.elapsed() < self.timings.stop_grace),
                m.accepted_release.clone(),
            ),
            None => (false, None),
        }
    }

    fn remember(
        &self,
        resource: &EcsInstance,
        object: &ObjectRef<EcsInstance>,
        call: &CloudCall,
        result: &Result<RequestId, EcsError>,
    ) {
        let Ok(request_id) = result else { return };
        let mut memory = self.memory.lock().expect("memory lock");
        let entry = memory.entry(object.clone()).or_default();
        if entry.uid != resource.uid() {
            *entry = Memory {
                uid: resource.uid(),
                ..Default::default()
            };
        }
        match call {
            CloudCall::Stop(_) => entry.stop_requested_at = Some(Instant::now()),
            CloudCall::Delete(_) => {
                entry.accepted_release = Some(ReleaseRecord {
                    request_id: Some(request_id.0.clone()),
                    requested_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        Timestamp::now(),
                    )),
                    confirmed_at: None,
                })
            }
            CloudCall::Tag(_) | CloudCall::Untag(_) => {}
        }
    }

    /// Drops everything this process keeps about a resource.
    fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.failures.forget(object);
        self.memory.lock().expect("memory lock").remove(object);
        self.recorders
            .lock()
            .expect("recorders lock")
            .retain(|(o, _), _| o != object);
        self.metrics.forget(object);
    }

    /// Watch health for `/healthz`, and cleanup of resources that are gone: on a delete event,
    /// and after a re-list for those that vanished while the watch was down.
    fn on_watch_event(
        &self,
        event: &Result<watcher::Event<EcsInstance>, watcher::Error>,
        store: &Store<EcsInstance>,
    ) {
        match event {
            Err(error) => {
                self.watch_health.failed();
                warn!(%error, "EcsInstance watch failed; retrying");
            }
            // kube-runtime emits `Init` before it lists: not yet proof that the watch works.
            Ok(watcher::Event::Init) => {}
            Ok(event) => {
                self.watch_health.succeeded();
                match event {
                    watcher::Event::Delete(resource) => {
                        self.forget(&ObjectRef::from_obj(resource));
                    }
                    watcher::Event::InitDone => self.forget_missing(store),
                    _ => {}
                }
            }
        }
    }

    fn forget_missing(&self, store: &Store<EcsInstance>) {
        let present: HashSet<ObjectRef<EcsInstance>> = store
            .state()
            .iter()
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect();
        let namespaces: HashSet<Option<String>> =
            present.iter().map(|o| o.namespace.clone()).collect();
        let gone: Vec<ObjectRef<EcsInstance>> = self
            .memory
            .lock()
            .expect("memory lock")
            .keys()
            .chain(self.metrics.tracked().iter())
            .filter(|o| namespaces.contains(&o.namespace) && !present.contains(o))
            .cloned()
            .collect();
        for object in gone {
            self.forget(&object);
        }
    }

    /// Server-side apply of the whole status, only when it differs from what is stored, so a
    /// steady resource causes no writes. Returns whether it wrote.
    async fn write_status(
        &self,
        api: &Api<EcsInstance>,
        resource: &EcsInstance,
        stored: Option<&EcsInstanceStatus>,
        status: &EcsInstanceStatus,
    ) -> Result<bool, Error> {
        if stored == Some(status) {
            return Ok(false);
        }
        let error = match apply_status(api, resource, status).await {
            Ok(()) => return Ok(true),
            // The API server refused the content (too large, invalid): write the essentials so
            // the resource never keeps a stale, healthy-looking status, and say so.
            Err(kube::Error::Api(refused)) if matches!(refused.code, 400 | 413 | 422) => refused,
            Err(error) => return Err(error.into()),
        };
        let note = format!(
            "The API server refused the status update ({}: {}); wrote a shortened status instead",
            error.code,
            ecs_client::clean_text(&error.message, 300)
        );
        warn!(resource = %ObjectRef::from_obj(resource), "{note}");
        apply_status(api, resource, &shortened(status)).await?;
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        self.emit(
            &recorder,
            resource,
            EventType::Warning,
            "StatusWriteRefused",
            "Observe",
            &note,
        )
        .await;
        Ok(true)
    }

    async fn publish(&self, resource: &EcsInstance, events: &[EventSpec]) {
        let object = ObjectRef::from_obj(resource);
        for event in events {
            let reason = event.reason.as_str();
            if event.warning {
                warn!(resource = %object, reason, "{}", event.note);
            } else {
                info!(resource = %object, reason, "{}", event.note);
            }
            let type_ = if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let recorder = self.recorder_for(&object, event.reason, &event.note);
            self.emit(
                &recorder,
                resource,
                type_,
                reason,
                event.action,
                &event.note,
            )
            .await;
        }
    }

    fn recorder_for(
        &self,
        object: &ObjectRef<EcsInstance>,
        reason: Reason,
        note: &str,
    ) -> Recorder {
        let gist = gist(note);
        let mut recorders = self.recorders.lock().expect("recorders lock");
        match recorders.get(&(object.clone(), reason)) {
            Some((last, recorder)) if *last == gist => recorder.clone(),
            _ => {
                let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                recorders.insert((object.clone(), reason), (gist, recorder.clone()));
                recorder
            }
        }
    }

    async fn emit(
        &self,
        recorder: &Recorder,
        resource: &EcsInstance,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &resource.object_ref(&())).await {
            warn!(%error, reason, "could not publish event");
        }
    }
}

/// A note without its RequestIds and numbers: two errors with the same gist are the same error.
fn gist(note: &str) -> String {
    let mut words = Vec::new();
    let mut after_request_id = false;
    for word in note.split_whitespace() {
        if std::mem::take(&mut after_request_id) {
            continue;
        }
        if word.trim_start_matches('(').starts_with("RequestId") {
            after_request_id = true;
            continue;
        }
        if !word.chars().any(|c| c.is_ascii_digit()) {
            words.push(word);
        }
    }
    words.join(" ")
}

async fn apply_status(
    api: &Api<EcsInstance>,
    resource: &EcsInstance,
    status: &EcsInstanceStatus,
) -> Result<(), kube::Error> {
    let patch = json!({
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

/// The status without `lastError` and with short condition messages: what must survive.
fn shortened(status: &EcsInstanceStatus) -> EcsInstanceStatus {
    let mut short = status.clone();
    short.last_error = None;
    for condition in &mut short.conditions {
        condition.message = ecs_client::clean_text(&condition.message, 256);
    }
    short
}

/// `namespace/name` of the oldest other resource (creationTimestamp, then UID) that names the
/// same region and instance, if it is older than this one: that one owns the instance.
fn owner_of(stores: &[Store<EcsInstance>], resource: &EcsInstance) -> Option<String> {
    let age = |r: &EcsInstance| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.uid());
    let own_age = age(resource);
    stores
        .iter()
        .flat_map(|store| store.state())
        .filter(|other| {
            other.spec.instance_id == resource.spec.instance_id
                && other.spec.region_id == resource.spec.region_id
                && other.uid() != resource.uid()
                && age(other) < own_age
        })
        .min_by_key(|other| age(other))
        .map(|owner| {
            format!(
                "{}/{}",
                owner.namespace().unwrap_or_default(),
                owner.name_any()
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_credentials_last_until_their_secret_changes() {
        let cache = SecretCache::default();
        let credentials = Credentials::new("AK", "secret", None);
        let epoch = cache.get("ns", "team").unwrap_err();
        cache.put("ns", "team", epoch, &credentials);
        assert!(cache.get("ns", "team").is_ok());
        cache.changed("ns", "team");
        let epoch = cache.get("ns", "team").unwrap_err();
        // A read that started before another change is not kept.
        cache.changed("ns", "team");
        cache.put("ns", "team", epoch, &credentials);
        assert!(cache.get("ns", "team").is_err());
        assert!(cache.get("other", "team").is_err(), "per namespace");
    }

    #[test]
    fn a_gist_ignores_request_ids_and_numbers() {
        assert_eq!(
            gist("DeleteInstance failed: ServiceUnavailable: busy (RequestId A1-B2, HTTP 503)"),
            gist("DeleteInstance failed: ServiceUnavailable: busy (RequestId C3-D4, HTTP 503)")
        );
        assert_ne!(
            gist("DeleteInstance failed: ServiceUnavailable: busy"),
            gist("DeleteInstance failed: InternalError: oops")
        );
    }
}
