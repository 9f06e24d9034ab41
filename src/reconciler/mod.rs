//! The thin async shell around [`decision`](crate::decision), in rooms:
//!
//! - [`pass`]: one pass over one resource (observe, plan, call, conclude, write, publish,
//!   finalizer), generic over the seams, so the deterministic simulation runs the same code;
//! - [`seams`]: the narrow interfaces a pass knows the world through (cloud, Kubernetes, clock);
//! - [`kube_api`]: the Kubernetes seam on kube's client (status writes, finalizer patches,
//!   Secrets, events);
//! - [`credentials`]: which credentials a resource uses, and the Secret cache;
//! - [`objects`]: what this process remembers of each resource between passes;
//! - [`watch`]: watch pacing and which changes wake the reconciler;
//! - [`queue`]: the work queue (which resource is due, one pass per resource at a time);
//! - this module: the controller loops over the watch caches, and what a pass sees of them.

mod credentials;
mod kube_api;
mod objects;
mod pass;
mod queue;
mod seams;
mod watch;

use std::{
    collections::{HashSet, VecDeque},
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use ecs_client::{CredentialsProvider, EcsClient};
use futures::{Future, FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tracing::warn;

pub use credentials::{CredentialsPolicy, Namespaces};
pub use kube_api::{KubeCluster, MANAGER};
pub use pass::{Outcome, Shell, View};
pub use seams::{Clock, Cloud, Cluster, Error, SecretRead, SystemClock};
use watch::Listed;
pub use watch::{names_secret, relevant_change};

use queue::{Key, WorkQueue};

use crate::{
    cached::CachedEcsInstance,
    decision::{Claimant, take_over_from},
    metrics::Metrics,
    pacing::Timings,
    resource::{
        DeletionPolicy, EcsInstance, FINALIZER, NAMESPACE_POLICY_ANNOTATION,
        SECRET_IN_USE_FINALIZER,
    },
    server::WatchHealth,
};

/// Resources reconciled at once by default. Passes mostly wait on ECS (the rate limiter, the
/// `DescribeInstances` batcher), and the more lookups wait together, the fuller each batch: with
/// 64, deleting 1,000 resources costs about 16 describes per polling round instead of 1,000.
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// One loop's watch cache, and whether it has listed.
#[derive(Clone)]
struct Cache {
    store: Store<CachedEcsInstance>,
    listed: Listed,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub shell: Shell<EcsClient, KubeCluster>,
    pub watch_health: WatchHealth,
    /// The cache of every loop, by the namespace it watches (`None`: all): ownership is
    /// decided across all watched namespaces.
    stores: Mutex<Vec<(Option<String>, Cache)>>,
    /// Whether Namespaces' `ecs.alicloud.dev/deletion-policy` annotations count
    /// (`--namespace-deletion-policies`; needs list/watch on namespaces).
    namespace_policies: bool,
    /// The Namespaces' metadata, watched once per process when `namespace_policies` is on.
    namespaces: OnceLock<(Store<PartialObjectMeta<Namespace>>, Listed)>,
}

impl Context {
    pub fn new(
        client: Client,
        ecs: EcsClient,
        own_credentials: Option<CredentialsProvider>,
        timings: Timings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut shell = Shell::new(
            ecs,
            KubeCluster::new(client.clone()),
            Arc::new(SystemClock),
            timings,
        );
        shell.own_credentials = own_credentials;
        shell.metrics = metrics;
        Context {
            client,
            shell,
            watch_health: WatchHealth::default(),
            stores: Mutex::new(Vec::new()),
            namespace_policies: false,
            namespaces: OnceLock::new(),
        }
    }

    pub fn with_policy(mut self, policy: CredentialsPolicy) -> Self {
        self.shell.policy = policy;
        self
    }

    /// Reports the watches' health to this handle (the one `/healthz` reads).
    pub fn with_watch_health(mut self, health: WatchHealth) -> Self {
        self.watch_health = health;
        self
    }

    /// The deletion policy of resources that set none (`--default-deletion-policy`), and
    /// whether a Namespace's annotation overrides it (`--namespace-deletion-policies`).
    pub fn with_deletion_policies(mut self, default: DeletionPolicy, per_namespace: bool) -> Self {
        self.shell.default_policy = default;
        self.namespace_policies = per_namespace;
        self
    }

    /// Starts the Namespace watch the first time it is asked for (once per process, whatever
    /// the number of loops); a no-op when Namespace policies are off.
    fn watch_namespaces(self: &Arc<Self>) {
        if !self.namespace_policies {
            return;
        }
        let (reader, writer) = reflector::store();
        let listed = Listed::of(&reader);
        if self.namespaces.set((reader, listed)).is_err() {
            return;
        }
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(self.client.clone());
        let ctx = self.clone();
        let stream = watch::paced(watcher(api, watcher::Config::default().any_semantic()))
            .modify(|namespace| namespace.managed_fields_mut().clear())
            .reflect(writer)
            .inspect(move |event| {
                if !matches!(event, Ok(watcher::Event::Init)) {
                    ctx.on_watch_health(event.as_ref().err(), "*", "namespaces")
                }
            });
        tokio::spawn(stream.for_each(|_| async {}));
    }

    /// The policy `resource`'s Namespace annotation sets, if any, for a resource that sets none.
    /// Deciding without it could release what the Namespace says to keep, so a Namespace watch
    /// that has not listed (after a short wait: at start-up it lists in about a second) gives no
    /// policy: nothing is changed in the cloud and a deletion waits, saying why.
    async fn namespace_policy(
        &self,
        resource: &EcsInstance,
    ) -> Result<Option<(String, Result<DeletionPolicy, String>)>, Error> {
        const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let Some((store, listed)) = self.namespaces.get() else {
            return Ok(None);
        };
        if resource.spec.deletion_policy.is_some() {
            return Ok(None);
        }
        let name = resource.namespace().unwrap_or_default();
        match tokio::time::timeout(LIST_WAIT, listed.wait()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::CacheStopped),
            Err(_) => {
                return Ok(Some((
                    name,
                    Err("the Namespaces watch has not listed yet (the controller needs list/watch on namespaces, or --namespace-deletion-policies=false; see /healthz and the log)".to_string()),
                )));
            }
        }
        let annotation = store.get(&ObjectRef::new(&name)).and_then(|namespace| {
            namespace
                .annotations()
                .get(NAMESPACE_POLICY_ANNOTATION)
                .cloned()
        });
        Ok(annotation.map(|value| {
            let policy = value.parse::<DeletionPolicy>().map_err(|_| {
                format!(
                    "its annotation {NAMESPACE_POLICY_ANNOTATION} is {value:?}, not Delete, Orphan or Observe"
                )
            });
            (name, policy)
        }))
    }

    /// The caches a pass of a resource in `namespace` reads: its own loop's, once it has
    /// listed, and every other loop's that has listed. A namespace that cannot be listed (its RoleBinding went)
    /// holds up nobody but its own resources (design.md §7).
    async fn stores_for(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<Store<CachedEcsInstance>>, Error> {
        let stores = self.stores.lock().expect("stores lock").clone();
        let mut ready = Vec::new();
        for (watched, cache) in stores {
            if watched.is_none() || watched.as_deref() == namespace {
                cache
                    .listed
                    .wait()
                    .await
                    .map_err(|()| Error::CacheStopped)?;
                ready.push(cache.store);
            } else if cache.listed.now() {
                ready.push(cache.store);
            }
        }
        Ok(ready)
    }
}

/// What a pass of `resource` sees of the other resources in `cache` (the watch caches, or the
/// simulation's): which name the same instance, and whether one that holds our finalizer names
/// the same credentials Secret.
pub fn view<'a>(
    resource: &EcsInstance,
    cache: impl IntoIterator<Item = &'a CachedEcsInstance>,
) -> View {
    let namespace = resource.namespace();
    let secret = resource
        .spec
        .credentials_ref
        .as_ref()
        .map(|r| r.name.as_str());
    let mut view = View::default();
    let wanted_uid = take_over_from(resource);
    // Runs over every cached resource on every pass: compare in place, allocate nothing.
    let own_uid = resource.metadata.uid.as_deref();
    for other in cache
        .into_iter()
        .filter(|o| o.metadata.uid.as_deref() != own_uid)
    {
        if wanted_uid.is_some()
            && (other.metadata.uid.as_deref() == wanted_uid || other.claim.as_deref() == wanted_uid)
        {
            view.take_over_blocker = Some(format!(
                "{}/{}",
                other.namespace().unwrap_or_default(),
                other.name_any()
            ));
        }
        if other.spec.instance_id == resource.spec.instance_id
            && other.spec.region_id == resource.spec.region_id
        {
            view.claimants.push(Claimant::from_parts(
                &other.metadata,
                other.listed,
                other.unseen,
                other.claim.as_deref(),
            ));
        }
        if !view.secret_needed_elsewhere
            && let (Some(namespace), Some(secret)) = (namespace.as_deref(), secret)
            && needs_secret(other, namespace, secret)
        {
            view.secret_needed_elsewhere = true;
        }
    }
    view
}

/// Whether `resource` holds our finalizer and names the Secret `namespace/name`: such a Secret
/// keeps its in-use finalizer (design.md §6).
pub fn needs_secret(resource: &CachedEcsInstance, namespace: &str, name: &str) -> bool {
    resource.metadata.namespace.as_deref() == Some(namespace)
        && resource.finalizers().iter().any(|f| f == FINALIZER)
        && names_secret(resource, name)
}

/// Whether a resource of `store` needs the Secret `namespace/name`.
fn secret_needed(store: &Store<CachedEcsInstance>, namespace: &str, name: &str) -> bool {
    store
        .state()
        .iter()
        .any(|resource| needs_secret(resource, namespace, name))
}

/// Runs the controller for one namespace (or all) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.watch_namespaces();
    let (instances_api, secrets_api): (Api<CachedEcsInstance>, Api<PartialObjectMeta<Secret>>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    let (reader, writer) = reflector::store();
    let cache = Cache {
        listed: Listed::of(&reader),
        store: reader.clone(),
    };
    ctx.stores
        .lock()
        .expect("stores lock")
        .push((namespace.clone(), cache.clone()));
    let watching = ctx.clone();
    let swept = cache.clone();
    let queue = Arc::new(WorkQueue::default());
    let forgetting = queue.clone();
    let watched = namespace.clone().unwrap_or_else(|| "*".to_string());
    let secrets_watched = watched.clone();
    // Deletions of resources clean what this process remembers of them. The cache keeps what
    // passes read (`CachedEcsInstance`).
    let config = watcher::Config::default().any_semantic();
    let (cached, woken) = (reader.clone(), queue.clone());
    let instances = watch::paced(watcher(instances_api, config.clone()))
        // Judged against the cached copy before the cache takes the change in (the pass, which
        // starts later, reads the new copy).
        .inspect(move |event| {
            if let Ok(watcher::Event::Apply(resource) | watcher::Event::InitApply(resource)) = event
                && watch::wakes(&cached, resource)
            {
                woken.schedule(key_of(resource), Instant::now());
            }
        })
        .reflect(writer)
        .inspect(move |event| watching.on_watch_event(event, &swept, &watched, &forgetting));
    // Credentials Secrets: metadata only (no secret data cached), to re-check at once the
    // resources that reference a Secret when it changes or appears, and to release the in-use
    // finalizer of a Secret no resource needs any more.
    let secret_watching = ctx.clone();
    let secrets = watch::paced(watcher(secrets_api, config))
        .inspect(move |event| {
            if !matches!(event, Ok(watcher::Event::Init)) {
                secret_watching.on_watch_health(event.as_ref().err(), &secrets_watched, "secrets")
            }
        })
        .touched_objects();
    let store = reader.clone();
    let secret_cache = cache.clone();
    let secret_ctx = ctx.clone();
    let secret_changes = watch::SecretChanges::default();
    let resource_triggers = instances.for_each(|_| async {});
    let secret_queue = queue.clone();
    let secret_triggers = secrets.for_each(move |secret| {
        if let Ok(secret) = secret {
            let namespace = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            secret_ctx.shell.secrets.changed(&namespace, &name);
            if secret
                .finalizers()
                .iter()
                .any(|f| f == SECRET_IN_USE_FINALIZER)
                && !secret_needed(&store, &namespace, &name)
            {
                secret_ctx.release_secret_later(
                    namespace.clone(),
                    name.clone(),
                    secret_cache.clone(),
                );
            }
            if secret_changes.wakes(&secret) {
                for key in watch::referencing(&store, Some(&namespace), &name) {
                    secret_queue.schedule(key, Instant::now());
                }
            }
        }
        async {}
    });
    let turns = Arc::new(Semaphore::new(concurrency.into()));
    // Passes waiting for a turn, first come, first served.
    let mut waiting: VecDeque<Key> = VecDeque::new();
    let mut passes = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut resource_triggers = pin!(resource_triggers);
    let mut secret_triggers = pin!(secret_triggers);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut resource_triggers => break,
            () = &mut secret_triggers => break,
            Some(_) = passes.join_next(), if !passes.is_empty() => {}
            turn = turns.clone().acquire_owned(), if !waiting.is_empty() => {
                let key = waiting.pop_front().expect("a waiting pass");
                let turn = turn.expect("the semaphore is never closed");
                passes.spawn(pass(key, ctx.clone(), queue.clone(), Some(turn)));
            }
            key = queue.next() => {
                // A resource whose release was sent skips the line: its passes only look (one
                // batched lookup) and then remove the finalizer, and behind passes waiting for
                // their own `DeleteInstance` turns they would wait until the last was sent.
                if reader.get(&reference_of(&key)).is_some_and(|cached| cached.release_sent) {
                    passes.spawn(pass(key, ctx.clone(), queue.clone(), None));
                } else {
                    waiting.push_back(key);
                }
            }
        }
    }
    // Passes that run end as they would (a status write, a finalizer); none starts any more.
    while passes.join_next().await.is_some() {}
}

/// The work queue's key of a cached resource, and back.
fn key_of(resource: &CachedEcsInstance) -> Key {
    queue::key(
        &resource.namespace().unwrap_or_default(),
        &resource.name_any(),
    )
}

fn reference_of(key: &str) -> ObjectRef<CachedEcsInstance> {
    let (namespace, name) = queue::parts(key);
    ObjectRef::new(name).within(namespace)
}

/// One pass over the resource `key` (holding `turn`, if it needed one), then tells the queue when
/// to look again: as the pass asked, after a failure as [`retry`] says, never if it panicked
/// (logged; a change of the resource asks again).
async fn pass(
    key: Key,
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    turn: Option<OwnedSemaphorePermit>,
) {
    queue.started(&key);
    let reference = reference_of(&key);
    let result = AssertUnwindSafe(reconcile(reference.clone(), ctx.clone()))
        .catch_unwind()
        .await;
    drop(turn);
    let then = match result {
        Ok(Ok(then)) => then,
        Ok(Err(error)) => retry(&reference, &error, &ctx),
        Err(_) => {
            warn!(resource = %reference, "a pass panicked");
            None
        }
    };
    queue.finished(key, then.map(|delay| Instant::now() + delay));
}

/// Reads the resource from the caches when its turn has come and makes a pass; when to look
/// again, if at all.
async fn reconcile(
    reference: ObjectRef<CachedEcsInstance>,
    ctx: Arc<Context>,
) -> Result<Option<Duration>, Error> {
    // Ownership is decided on the caches: never before this namespace's first complete list.
    let stores = ctx.stores_for(reference.namespace.as_deref()).await?;
    // The resource as the cache holds it now.
    let Some(cached) = stores.iter().find_map(|store| store.get(&reference)) else {
        return Ok(None);
    };
    let resource = cached
        .to_resource()
        .map_err(|error| Error::Unavailable(error.to_string()))?;
    drop(cached);
    // The other resources matter only to a pass over a resource holding our finalizer (one
    // without gets it, or is forgotten): the view costs a look at every cached object, and at a
    // start with many resources every first pass would pay it for nothing. The snapshot of every
    // cached object is dropped before the pass waits on anything: held through it (by hundreds
    // of passes) it kept superseded copies of objects alive.
    let mut view = if resource.finalizers().iter().any(|f| f == FINALIZER) {
        let cache: Vec<Arc<CachedEcsInstance>> =
            stores.iter().flat_map(|store| store.state()).collect();
        view(&resource, cache.iter().map(Arc::as_ref))
    } else {
        View::default()
    };
    view.namespace_policy = ctx.namespace_policy(&resource).await?;
    Ok(match ctx.shell.reconcile(&resource, &view).await? {
        Outcome::Requeue(delay) => Some(delay),
        Outcome::AwaitChange => None,
    })
}

/// After a failed pass: logged, counted, and looked at again after the shell's retry delay.
fn retry(
    reference: &ObjectRef<CachedEcsInstance>,
    error: &Error,
    ctx: &Context,
) -> Option<Duration> {
    warn!(%error, resource = %reference, "reconcile error");
    ctx.shell.metrics.reconcile_failed(error.label());
    let stores = ctx.stores.lock().expect("stores lock").clone();
    let cached = stores
        .iter()
        .find_map(|(_, cache)| cache.store.get(reference))?;
    Some(ctx.shell.retry_delay(cached.as_ref(), error))
}

impl Context {
    /// Releases the in-use finalizer of a Secret outside the watch's callback (which cannot
    /// wait), checking again before each try that no resource needs it.
    fn release_secret_later(self: &Arc<Self>, namespace: String, name: String, cache: Cache) {
        let ctx = self.clone();
        tokio::spawn(async move {
            // Right after a start, the Secrets watch may list before the resources have: an
            // empty cache would say nobody needs any Secret.
            if cache.listed.wait().await.is_err() {
                return;
            }
            let store = cache.store;
            ctx.shell
                .release_secret_until_done(&namespace, &name, || {
                    secret_needed(&store, &namespace, &name)
                })
                .await;
        });
    }

    /// Watch health for `/healthz`, and cleanup of resources that are gone: on a delete event
    /// (with the in-use finalizer of a Secret it was the last to need), and after a re-list for
    /// those that vanished while the watch was down.
    fn on_watch_event(
        self: &Arc<Self>,
        event: &Result<watcher::Event<CachedEcsInstance>, watcher::Error>,
        cache: &Cache,
        namespace: &str,
        queue: &WorkQueue,
    ) {
        if !matches!(event, Ok(watcher::Event::Init)) {
            self.on_watch_health(event.as_ref().err(), namespace, "ecsinstances");
        }
        if let Ok(event) = event {
            match event {
                watcher::Event::Delete(resource) => {
                    queue.forget(&key_of(resource));
                    self.shell.forget(&resource.object_ref());
                    if let Some(reference) = &resource.spec.credentials_ref {
                        let namespace = resource.namespace().unwrap_or_default();
                        self.release_secret_later(namespace, reference.name.clone(), cache.clone());
                    }
                }
                watcher::Event::InitDone => self.forget_missing(&cache.store),
                _ => {}
            }
        }
    }

    /// Health, metric and log of one watch (`resource` in `namespace`) after an event or an
    /// error. kube-runtime's `Init` comes before the list: not yet proof that the watch works.
    fn on_watch_health(&self, error: Option<&watcher::Error>, namespace: &str, resource: &str) {
        let watch = format!("{namespace} ({resource})");
        match error {
            Some(error) => {
                self.watch_health.failed(&watch, &error.to_string());
                self.shell.metrics.watch_failing(namespace, resource, true);
                warn!(%error, namespace, resource, "watch failed; retrying (other namespaces carry on)");
            }
            None => {
                self.watch_health.succeeded(&watch);
                self.shell.metrics.watch_failing(namespace, resource, false);
            }
        }
    }

    fn forget_missing(&self, store: &Store<CachedEcsInstance>) {
        let present: HashSet<ObjectRef<EcsInstance>> =
            store.state().iter().map(|r| r.object_ref()).collect();
        let namespaces: HashSet<Option<String>> =
            present.iter().map(|o| o.namespace.clone()).collect();
        let gone: Vec<ObjectRef<EcsInstance>> = self
            .shell
            .objects
            .known()
            .into_iter()
            .chain(self.shell.metrics.tracked())
            .filter(|o| namespaces.contains(&o.namespace) && !present.contains(o))
            .collect();
        for object in gone {
            self.shell.forget(&object);
        }
    }
}
