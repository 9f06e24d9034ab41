//! The simulated world: one in-memory ECS (instances per account, a call log) and one in-memory
//! Kubernetes API (EcsInstances, Secrets, namespaces, events), behind the controller's seams.
//! Everything lives in one [`World`] behind a mutex that is never held across an `.await`; the
//! seams' calls take virtual time (tokio's paused clock) so a crash can land in the middle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ecs_client::{Credentials, EcsError, ErrorKind, Instance, InstanceStatus, RequestId};
use ecs_instance_controller::{
    decision::{CloudCall, EventSpec},
    reasons::Reason,
    reconciler::{Clock, Cloud, Cluster, Error, SecretRead},
    resource::{
        DeletionPolicy, EcsInstance, EcsInstanceStatus, FINALIZER, OWNER_UID_TAG,
        SECRET_IN_USE_FINALIZER,
    },
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// `namespace/name`.
pub type Key = (String, String);

pub fn key_of(resource: &EcsInstance) -> Key {
    (
        resource.namespace().unwrap_or_default(),
        resource.name_any(),
    )
}

pub fn show(key: &Key) -> String {
    format!("{}/{}", key.0, key.1)
}

/// The fixed wall-clock time at virtual time zero.
pub fn epoch() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("a valid timestamp")
}

/// Which AccessKeyIds belong to which account.
pub fn account_of(access_key_id: &str) -> Option<&'static str> {
    match access_key_id {
        "LTAIaccountA1" | "LTAIaccountA2" => Some("A"),
        "LTAIaccountB1" => Some("B"),
        _ => None,
    }
}

/// Who is making a call: set around every pass (a tokio task-local).
#[derive(Clone, Debug)]
pub struct Actor {
    pub process: u32,
    /// The resource the pass is for (empty for Secret housekeeping).
    pub uid: String,
    pub key: Key,
    /// A number for each pass (0 for housekeeping).
    pub pass: u64,
}

tokio::task_local! {
    pub static ACTOR: Actor;
}

fn actor() -> Option<Actor> {
    ACTOR.try_with(Actor::clone).ok()
}

/// One ECS instance.
#[derive(Clone, Debug)]
pub struct SimInstance {
    pub id: String,
    pub region: String,
    pub account: &'static str,
    pub status: InstanceStatus,
    /// Stopping until then, Stopped after.
    pub stopped_at: Option<Duration>,
    pub tags: BTreeMap<String, String>,
    /// When a `DeleteInstance` was processed.
    pub released_at: Option<Duration>,
    /// When it stops being listed (1–30 s after the release).
    pub gone_at: Option<Duration>,
}

impl SimInstance {
    pub fn listed(&self, now: Duration) -> bool {
        self.gone_at.is_none_or(|gone| now < gone)
    }

    fn settle(&mut self, now: Duration) {
        if self.status == InstanceStatus::Stopping && self.stopped_at.is_some_and(|at| now >= at) {
            self.status = InstanceStatus::Stopped;
        }
    }
}

/// One call that reached the cloud.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub at: Duration,
    pub action: &'static str,
    pub instance: String,
    pub caller_account: String,
    pub instance_account: String,
    pub processed: bool,
    pub request_id: String,
    pub uid: String,
    pub process: u32,
}

/// A Secret (data and the metadata that matters).
#[derive(Clone, Debug, PartialEq)]
pub struct SimSecret {
    pub uid: String,
    pub access_key_id: String,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

/// One change of the store, as a watch delivers it (`None`: the object is gone).
#[derive(Clone, Debug)]
pub enum Change {
    Instance(Key, Option<Arc<EcsInstance>>),
    Secret(Key, Option<SimSecret>),
}

/// What is left of a resource that went away.
#[derive(Clone, Debug)]
pub struct Grave {
    pub key: Key,
    pub uid: String,
    pub resource: EcsInstance,
    pub events: Vec<(Reason, String)>,
}

/// Faults are on in the active phase only.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub cloud: bool,
    pub kube: bool,
}

pub struct World {
    pub rng: StdRng,
    pub now: Duration,
    pub faults: Faults,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    // The cloud.
    pub instances: BTreeMap<String, SimInstance>,
    pub calls: Vec<CallRecord>,
    next_request: u64,
    // Kubernetes.
    pub objects: BTreeMap<Key, EcsInstance>,
    pub secrets: BTreeMap<Key, SimSecret>,
    pub terminating: BTreeSet<String>,
    pub changes: Vec<(Duration, Change)>,
    pub events: BTreeMap<String, Vec<(Reason, String)>>,
    pub graves: Vec<Grave>,
    /// The deletionPolicy of each resource when its release intent was last written.
    pub intent_policy: BTreeMap<String, DeletionPolicy>,
    /// Who tagged each instance with each claim: (instance, claim) → the tagging resource's UID.
    pub claim_tags: BTreeMap<(String, String), String>,
    /// The claim being handed out and the instances it was handed out for.
    claims: Option<(String, BTreeSet<String>)>,
    next_claim: u64,
    passes: u64,
    resource_version: u64,
    next_uid: u64,
}

impl World {
    pub fn new(seed: u64) -> Self {
        World {
            rng: StdRng::seed_from_u64(seed),
            now: Duration::ZERO,
            faults: Faults {
                cloud: true,
                kube: true,
            },
            trace: Vec::new(),
            violations: Vec::new(),
            instances: BTreeMap::new(),
            calls: Vec::new(),
            next_request: 0,
            objects: BTreeMap::new(),
            secrets: BTreeMap::new(),
            terminating: BTreeSet::new(),
            changes: Vec::new(),
            events: BTreeMap::new(),
            graves: Vec::new(),
            intent_policy: BTreeMap::new(),
            passes: 0,
            resource_version: 0,
            next_uid: 0,
            claim_tags: BTreeMap::new(),
            claims: None,
            next_claim: 0,
        }
    }

    pub fn log(&mut self, who: &str, what: impl AsRef<str>) {
        let t = self.now.as_millis();
        let line = format!("{:>6}.{:03} {who:<8} {}", t / 1000, t % 1000, what.as_ref());
        self.trace.push(line);
    }

    pub fn violation(&mut self, what: String) {
        self.log("INVARIANT", format!("VIOLATED: {what}"));
        self.violations.push(what);
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.rng.random_range(low..=high))
    }

    pub fn timestamp(&self) -> Timestamp {
        epoch() + self.now
    }

    pub fn next_pass(&mut self) -> u64 {
        self.passes += 1;
        self.passes
    }

    pub fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("uid-{:04}", self.next_uid)
    }

    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// A claim for tagging `instance` (half the time, as if tag calls were busy), never handed
    /// out twice for one instance, at most three instances each (so batches often end).
    fn tag_claim(&mut self, instance: &str) -> Option<String> {
        if !self.chance(0.5) {
            return None;
        }
        match &mut self.claims {
            Some((claim, ids)) if ids.len() < 3 && !ids.contains(instance) => {
                ids.insert(instance.to_string());
                Some(claim.clone())
            }
            _ => {
                self.next_claim += 1;
                let claim = format!("{}{:016x}", ecs_client::CLAIM_PREFIX, self.next_claim);
                self.claims = Some((claim.clone(), BTreeSet::from([instance.to_string()])));
                Some(claim)
            }
        }
    }

    /// The UID of the resource the instance's owner tag stands for: the UID in it, or the UID
    /// of the resource that tagged it with the claim in it.
    fn tagged_for(&self, instance: &SimInstance) -> Option<String> {
        let value = instance.tags.get(OWNER_UID_TAG)?;
        match self.claim_tags.get(&(instance.id.clone(), value.clone())) {
            Some(uid) => Some(uid.clone()),
            None => Some(value.clone()),
        }
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("REQ-{:05}", self.next_request)
    }

    // ---- Kubernetes store -------------------------------------------------------------------

    /// Stores a changed resource (new resourceVersion), or removes it when it is deleting and
    /// has no finalizer left.
    pub fn store_object(&mut self, mut resource: EcsInstance) {
        let key = key_of(&resource);
        resource.metadata.resource_version = Some(self.bump());
        if resource.metadata.deletion_timestamp.is_some() && resource.finalizers().is_empty() {
            self.objects.remove(&key);
            let uid = resource.uid().unwrap_or_default();
            let events = self.events.get(&uid).cloned().unwrap_or_default();
            self.log("kube", format!("{} ({uid}) is gone", show(&key)));
            self.graves.push(Grave {
                key: key.clone(),
                uid,
                resource,
                events,
            });
            self.changes.push((self.now, Change::Instance(key, None)));
            self.namespace_cleanup();
        } else {
            self.objects.insert(key.clone(), resource.clone());
            self.changes
                .push((self.now, Change::Instance(key, Some(Arc::new(resource)))));
        }
    }

    pub fn store_secret(&mut self, key: Key, secret: Option<SimSecret>) {
        match secret {
            Some(secret) if secret.deleting && secret.finalizers.is_empty() => {
                self.log("kube", format!("Secret {} is gone", show(&key)));
                self.secrets.remove(&key);
                self.changes.push((self.now, Change::Secret(key, None)));
                self.namespace_cleanup();
            }
            Some(secret) => {
                self.bump();
                self.secrets.insert(key.clone(), secret.clone());
                self.changes
                    .push((self.now, Change::Secret(key, Some(secret))));
            }
            None => {
                self.secrets.remove(&key);
                self.changes.push((self.now, Change::Secret(key, None)));
            }
        }
    }

    /// A terminating namespace with nothing left in it is gone (and may be created again).
    pub fn namespace_cleanup(&mut self) {
        let empty: Vec<String> = self
            .terminating
            .iter()
            .filter(|ns| {
                !self.objects.keys().any(|k| &k.0 == *ns)
                    && !self.secrets.keys().any(|k| &k.0 == *ns)
            })
            .cloned()
            .collect();
        for ns in empty {
            self.log("kube", format!("namespace {ns} is gone"));
            self.terminating.remove(&ns);
        }
    }

    /// A user's (or the garbage collector's) delete of a resource.
    pub fn delete_object(&mut self, key: &Key) {
        let Some(mut resource) = self.objects.get(key).cloned() else {
            return;
        };
        if resource.metadata.deletion_timestamp.is_none() {
            resource.metadata.deletion_timestamp = Some(Time(self.timestamp()));
            resource.metadata.generation = Some(resource.metadata.generation.unwrap_or(1) + 1);
            self.store_object(resource);
        }
    }

    pub fn delete_secret(&mut self, key: &Key) {
        if let Some(mut secret) = self.secrets.get(key).cloned()
            && !secret.deleting
        {
            secret.deleting = true;
            self.store_secret(key.clone(), Some(secret));
        }
    }

    // ---- Invariants checked where the act happens ---------------------------------------------

    fn check_delete(&mut self, record: &CallRecord, instance: &SimInstance, processed: bool) {
        if instance.released_at.is_some() {
            self.violation(format!(
                "invariant 3: a second DeleteInstance ({}) reached the cloud for {}, released at {:?}, from {} in P{}",
                record.request_id, instance.id, instance.released_at, record.uid, record.process
            ));
        }
        if !processed {
            return;
        }
        let owner = self.tagged_for(instance).unwrap_or_default();
        if owner != record.uid {
            self.violation(format!(
                "invariant 1: DeleteInstance of {} tagged for {owner:?} processed for resource {}",
                instance.id, record.uid
            ));
        }
        if record.caller_account != record.instance_account {
            self.violation(format!(
                "invariant 1: DeleteInstance of {} (account {}) with credentials of account {}",
                instance.id, record.instance_account, record.caller_account
            ));
        }
        if self.intent_policy.get(&record.uid) == Some(&DeletionPolicy::Orphan) {
            self.violation(format!(
                "invariant 1: DeleteInstance of {} by {} whose deletionPolicy was Orphan when its intent was written",
                instance.id, record.uid
            ));
        }
    }

    /// A claim stands for one resource on each instance: never two tag one instance with it.
    fn check_claim(&mut self, record: &CallRecord, claim: String) {
        let key = (record.instance.clone(), claim);
        match self.claim_tags.get(&key) {
            Some(uid) if *uid != record.uid => self.violation(format!(
                "invariant 1: {} tagged with claim {} by {} and by {}",
                key.0, key.1, uid, record.uid
            )),
            _ => {
                self.claim_tags.insert(key, record.uid.clone());
            }
        }
    }

    fn check_finalizer_removal(&mut self, resource: &EcsInstance) {
        let uid = resource.uid().unwrap_or_default();
        if resource.spec.deletion_policy == Some(DeletionPolicy::Orphan) {
            return;
        }
        let now = self.now;
        if let Some(instance) = self.instances.get(&resource.spec.instance_id)
            && instance.region == resource.spec.region_id
            && instance.listed(now)
            && instance.released_at.is_none()
            && self.tagged_for(instance) == Some(uid.clone())
        {
            let id = instance.id.clone();
            self.violation(format!(
                "invariant 2: finalizer of {} ({uid}) removed while {id} is listed, unreleased and tagged for it",
                show(&key_of(resource))
            ));
        }
    }
}

/// The world, shared by the driver, the seams and the passes.
pub struct Shared {
    world: Mutex<World>,
}

impl Shared {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Shared {
            world: Mutex::new(World::new(seed)),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    /// Sleeps a random virtual time between `low` and `high` milliseconds.
    async fn latency(&self, low: u64, high: u64) {
        let pause = self.lock().millis(low, high);
        tokio::time::sleep(pause).await;
        self.tick();
    }

    /// Brings the world's clock to tokio's virtual time.
    pub fn tick(&self) {
        let mut world = self.lock();
        world.now = virtual_now();
        let now = world.now;
        for instance in world.instances.values_mut() {
            instance.settle(now);
        }
    }
}

/// The virtual time since the simulation started (tokio's paused clock).
pub fn virtual_now() -> Duration {
    START
        .with(|start| start.get())
        .map_or(Duration::ZERO, |start| {
            tokio::time::Instant::now().saturating_duration_since(start)
        })
}

thread_local! {
    static START: std::cell::Cell<Option<tokio::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Marks virtual time zero (once per run, on the runtime's thread).
pub fn start_clock() {
    START.with(|start| start.set(Some(tokio::time::Instant::now())));
}

fn who() -> String {
    match actor() {
        Some(actor) => format!("P{}", actor.process),
        None => "?".to_string(),
    }
}

fn about() -> String {
    match actor() {
        Some(actor) if !actor.uid.is_empty() => show(&actor.key),
        _ => String::new(),
    }
}

// ---- The cloud seam -------------------------------------------------------------------------

#[derive(Clone)]
pub struct SimCloud(pub Arc<Shared>);

/// What a cloud call suffers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CloudFault {
    None,
    RequestLost,
    AnswerLost,
    Delay,
    Throttled,
    Unavailable,
}

fn api_error(action: &str, status: u16, code: &str, message: &str, request_id: &str) -> EcsError {
    let body =
        format!("{{\"RequestId\":\"{request_id}\",\"Code\":\"{code}\",\"Message\":\"{message}\"}}");
    EcsError::from_response(action, status, body.as_bytes())
}

impl SimCloud {
    fn fault(&self) -> CloudFault {
        let mut world = self.0.lock();
        if !world.faults.cloud {
            return CloudFault::None;
        }
        let roll: f64 = world.rng.random();
        match roll {
            r if r < 0.05 => CloudFault::RequestLost,
            r if r < 0.10 => CloudFault::AnswerLost,
            r if r < 0.15 => CloudFault::Delay,
            r if r < 0.19 => CloudFault::Throttled,
            r if r < 0.23 => CloudFault::Unavailable,
            _ => CloudFault::None,
        }
    }

    /// The request's way to the cloud: lost, delayed, or arrived.
    async fn send(&self, action: &str, fault: CloudFault) -> Result<(), EcsError> {
        self.0.latency(20, 300).await;
        if fault == CloudFault::Delay {
            let pause = self.0.lock().millis(1_000, 20_000);
            tokio::time::sleep(pause).await;
            self.0.tick();
        }
        if fault == CloudFault::RequestLost {
            self.0.latency(1_000, 10_000).await;
            let mut world = self.0.lock();
            let line = format!("{} {action} request lost -> Timeout", about());
            world.log(&who(), line);
            return Err(EcsError::new(
                action,
                ErrorKind::Timeout,
                "operation timed out",
            ));
        }
        Ok(())
    }

    /// The answer's way back.
    async fn answer<T>(
        &self,
        action: &str,
        fault: CloudFault,
        result: Result<T, EcsError>,
    ) -> Result<T, EcsError> {
        self.0.latency(20, 300).await;
        if fault == CloudFault::AnswerLost {
            let kind = if self.0.lock().chance(0.5) {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transport
            };
            let mut world = self.0.lock();
            let line = format!("{} {action} answer lost -> {kind:?}", about());
            world.log(&who(), line);
            return Err(EcsError::new(action, kind, "the answer was lost"));
        }
        result
    }
}

impl Cloud for SimCloud {
    fn tag_claim(&self, instance_id: &str) -> Option<String> {
        self.0.lock().tag_claim(instance_id)
    }

    async fn observe(
        &self,
        region: &str,
        credentials: &Credentials,
        instance_id: &str,
    ) -> Result<Option<Instance>, EcsError> {
        let action = "DescribeInstances";
        let fault = self.fault();
        self.send(action, fault).await?;
        let result = {
            let mut world = self.0.lock();
            let request_id = world.request_id();
            let account = account_of(credentials.access_key_id());
            let now = world.now;
            let result = match fault {
                CloudFault::Throttled => Err(api_error(
                    action,
                    400,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    &request_id,
                )),
                CloudFault::Unavailable => Err(api_error(
                    action,
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                    &request_id,
                )),
                _ => Ok(world
                    .instances
                    .get(instance_id)
                    .filter(|i| i.region == region && Some(i.account) == account && i.listed(now))
                    .map(|i| Instance {
                        instance_id: i.id.clone(),
                        region_id: i.region.clone(),
                        zone_id: format!("{}-a", i.region),
                        status: i.status.clone(),
                        charge_type: "PostPaid".to_string(),
                        deletion_protection: false,
                        lock_reasons: Vec::new(),
                        expired_time: None,
                        tags: i.tags.clone(),
                    })),
            };
            let shown = match &result {
                Ok(Some(i)) => format!("listed {} tags={:?}", i.status, i.tags.get(OWNER_UID_TAG)),
                Ok(None) => "not listed".to_string(),
                Err(e) => format!("error {}", e.code().unwrap_or("?")),
            };
            let line = format!(
                "{} Describe {instance_id} as {} -> {shown}",
                about(),
                credentials.access_key_id()
            );
            world.log(&who(), line);
            result
        };
        self.answer(action, fault, result).await
    }

    /// The simulated cloud has no rate limiter: a turn is always there.
    type Turn = ();

    async fn take_release_turn(&self, _: &str, _: &Credentials) -> Result<(), EcsError> {
        Ok(())
    }

    async fn call(
        &self,
        region: &str,
        credentials: &Credentials,
        call: &CloudCall,
        _turn: Option<()>,
    ) -> Result<RequestId, EcsError> {
        let action = call.action();
        let fault = self.fault();
        self.send(action, fault).await?;
        let result = {
            let mut world = self.0.lock();
            let world = &mut *world;
            let now = world.now;
            let request_id = world.request_id();
            let caller_account = account_of(credentials.access_key_id()).unwrap_or("?");
            let id = match call {
                CloudCall::Stop(r) => r.instance_id.clone(),
                CloudCall::Delete(r) => r.instance_id.clone(),
                CloudCall::Tag(r) => r.instance_id.clone(),
                CloudCall::Untag(r) => r.instance_id.clone(),
            };
            let not_found = || {
                api_error(
                    action,
                    404,
                    "InvalidInstanceId.NotFound",
                    "The specified InstanceId does not exist.",
                    &request_id,
                )
            };
            let visible = world
                .instances
                .get(&id)
                .filter(|i| i.region == region && i.account == caller_account && i.listed(now))
                .cloned();
            let refused = match fault {
                CloudFault::Throttled => Some(api_error(
                    action,
                    400,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    &request_id,
                )),
                CloudFault::Unavailable => Some(api_error(
                    action,
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                    &request_id,
                )),
                _ => None,
            };
            let stop_delay = world.millis(2_000, 20_000);
            let gone_delay = world.millis(1_000, 30_000);
            let mut claim_tagged = None;
            let result: Result<RequestId, EcsError> = match (refused, visible) {
                (Some(error), _) => Err(error),
                (None, None) => Err(not_found()),
                (None, Some(instance)) => {
                    let stored = world.instances.get_mut(&id).expect("visible");
                    match call {
                        CloudCall::Stop(_) => match instance.status {
                            InstanceStatus::Running => {
                                stored.status = InstanceStatus::Stopping;
                                stored.stopped_at = Some(now + stop_delay);
                                Ok(())
                            }
                            InstanceStatus::Stopping => Ok(()),
                            _ => Err(api_error(
                                action,
                                403,
                                "IncorrectInstanceStatus",
                                "The current status of the resource does not support this operation.",
                                &request_id,
                            )),
                        },
                        CloudCall::Delete(delete) => {
                            if instance.status == InstanceStatus::Stopped || delete.force {
                                if stored.released_at.is_none() {
                                    stored.released_at = Some(now);
                                    stored.gone_at = Some(now + gone_delay);
                                }
                                Ok(())
                            } else {
                                Err(api_error(
                                    action,
                                    403,
                                    "IncorrectInstanceStatus",
                                    "The current status of the resource does not support this operation.",
                                    &request_id,
                                ))
                            }
                        }
                        CloudCall::Tag(tag) => {
                            stored.tags.extend(tag.tags.clone());
                            claim_tagged = tag
                                .tags
                                .get(OWNER_UID_TAG)
                                .filter(|value| value.starts_with(ecs_client::CLAIM_PREFIX))
                                .cloned();
                            Ok(())
                        }
                        CloudCall::Untag(untag) => {
                            for key in &untag.keys {
                                stored.tags.remove(key);
                            }
                            Ok(())
                        }
                    }
                    .map(|()| RequestId(request_id.clone()))
                }
            };
            let processed = result.is_ok();
            let who_called = actor();
            let record = CallRecord {
                at: now,
                action,
                instance: id.clone(),
                caller_account: caller_account.to_string(),
                instance_account: world
                    .instances
                    .get(&id)
                    .map_or("?", |i| i.account)
                    .to_string(),
                processed,
                request_id: request_id.clone(),
                uid: who_called
                    .as_ref()
                    .map(|a| a.uid.clone())
                    .unwrap_or_default(),
                process: who_called.as_ref().map_or(0, |a| a.process),
            };
            if let Some(claim) = claim_tagged {
                world.check_claim(&record, claim);
            }
            if let CloudCall::Delete(_) = call
                && let Some(instance) = &world.instances.get(&id).cloned()
            {
                // The instance as it was before this call.
                let before = SimInstance {
                    released_at: world
                        .calls
                        .iter()
                        .rev()
                        .find(|c| c.action == "DeleteInstance" && c.processed && c.instance == id)
                        .map(|c| c.at),
                    ..instance.clone()
                };
                world.check_delete(&record, &before, processed);
            }
            let shown = match &result {
                Ok(_) => "processed".to_string(),
                Err(e) => format!("refused {}", e.code().unwrap_or("?")),
            };
            let line = format!(
                "{} {action} {id} as {} {request_id} -> {shown}",
                about(),
                credentials.access_key_id()
            );
            world.log(&who(), line);
            world.calls.push(record);
            result
        };
        self.answer(action, fault, result).await
    }
}

// ---- The Kubernetes seam --------------------------------------------------------------------

#[derive(Clone)]
pub struct SimCluster(pub Arc<Shared>);

impl SimCluster {
    /// A round trip to the API server; `Err` when the request fails before it is applied.
    async fn request(&self, what: &str) -> Result<(), Error> {
        self.0.latency(2, 50).await;
        let mut world = self.0.lock();
        if world.faults.kube && world.chance(0.03) {
            let line = format!("{} {what} -> API server unavailable", about());
            world.log(&who(), line);
            return Err(Error::Unavailable(
                "503 the API server is unavailable".into(),
            ));
        }
        Ok(())
    }

    /// The answer's way back: a write applied whose answer is lost.
    async fn reply<T>(&self, what: &str, result: Result<T, Error>) -> Result<T, Error> {
        self.0.latency(2, 50).await;
        let mut world = self.0.lock();
        if result.is_ok() && world.faults.kube && world.chance(0.02) {
            let line = format!("{} {what} applied, answer lost", about());
            world.log(&who(), line);
            return Err(Error::Unavailable(
                "the connection to the API server broke".into(),
            ));
        }
        result
    }
}

fn gone(key: &Key) -> Error {
    Error::Unavailable(format!("404 {} not found", show(key)))
}

impl Cluster for SimCluster {
    async fn write_status(
        &self,
        resource: &EcsInstance,
        status: &EcsInstanceStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, Error> {
        self.request("write status").await?;
        let result = {
            let mut world = self.0.lock();
            let key = key_of(resource);
            let reason = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.reason.clone())
                .unwrap_or_default();
            let intent = status
                .release
                .as_ref()
                .is_some_and(|r| r.request_id.is_none() && r.requested_at.is_some());
            match world.objects.get(&key).cloned() {
                None => Err(gone(&key)),
                Some(stored)
                    if resource_version.is_some()
                        && stored.metadata.resource_version.as_deref() != resource_version =>
                {
                    let line = format!(
                        "{} write status {reason} at rv {resource_version:?} -> Conflict (rv {:?})",
                        show(&key),
                        stored.metadata.resource_version
                    );
                    world.log(&who(), line);
                    Err(Error::Conflict(key.1.clone()))
                }
                Some(mut stored) => {
                    // As the API server keeps it: its JSON, times to the second, so what the
                    // next read returns (and the watch caches parse) is what was stored.
                    let status = &stored_form(status);
                    // A new intent (not one carried over from the status read).
                    let requested = |s: Option<&EcsInstanceStatus>| {
                        s.and_then(|s| s.release.as_ref())
                            .and_then(|r| r.requested_at.clone())
                    };
                    let new_intent =
                        intent && requested(stored.status.as_ref()) != requested(Some(status));
                    if new_intent {
                        let uid = stored.uid().unwrap_or_default();
                        let policy = stored.spec.deletion_policy;
                        world.intent_policy.insert(uid, policy.unwrap_or_default());
                    }
                    stored.status = Some(status.clone());
                    world.store_object(stored);
                    let version = world.objects.get(&key).and_then(|o| o.resource_version());
                    let line = format!(
                        "{} write status {reason}{} -> rv {version:?}",
                        show(&key),
                        if intent { " (release intent)" } else { "" }
                    );
                    world.log(&who(), line);
                    Ok(version)
                }
            }
        };
        self.reply("write status", result).await
    }

    async fn add_finalizer(&self, resource: &EcsInstance) -> Result<(), Error> {
        self.request("add finalizer").await?;
        let result = {
            let mut world = self.0.lock();
            let key = key_of(resource);
            match world.objects.get(&key).cloned() {
                None => Err(gone(&key)),
                Some(stored)
                    if stored.finalizers() != resource.finalizers()
                        || stored.metadata.deletion_timestamp.is_some() =>
                {
                    world.log(&who(), format!("{} add finalizer -> Conflict", show(&key)));
                    Err(Error::Conflict(key.1.clone()))
                }
                Some(mut stored) => {
                    stored.finalizers_mut().push(FINALIZER.to_string());
                    world.store_object(stored);
                    world.log(&who(), format!("{} finalizer added", show(&key)));
                    Ok(())
                }
            }
        };
        self.reply("add finalizer", result).await
    }

    async fn remove_finalizer(
        &self,
        resource: &EcsInstance,
        resource_version: Option<&str>,
    ) -> Result<(), Error> {
        let Some(index) = resource.finalizers().iter().position(|f| f == FINALIZER) else {
            return Ok(());
        };
        self.request("remove finalizer").await?;
        let result = {
            let mut world = self.0.lock();
            let key = key_of(resource);
            match world.objects.get(&key).cloned() {
                None => Err(gone(&key)),
                Some(stored)
                    if stored.finalizers().get(index).map(String::as_str) != Some(FINALIZER)
                        || (resource_version.is_some()
                            && stored.metadata.resource_version.as_deref() != resource_version) =>
                {
                    let line = format!(
                        "{} remove finalizer at rv {resource_version:?} -> Conflict (rv {:?})",
                        show(&key),
                        stored.metadata.resource_version
                    );
                    world.log(&who(), line);
                    Err(Error::Conflict(key.1.clone()))
                }
                Some(mut stored) => {
                    world.check_finalizer_removal(&stored);
                    stored.finalizers_mut().remove(index);
                    world.log(&who(), format!("{} finalizer removed", show(&key)));
                    world.store_object(stored);
                    Ok(())
                }
            }
        };
        self.reply("remove finalizer", result).await
    }

    async fn read_secret(&self, namespace: &str, name: &str) -> Result<Option<SecretRead>, Error> {
        self.request("read Secret").await?;
        let result = {
            let world = self.0.lock();
            world
                .secrets
                .get(&(namespace.to_string(), name.to_string()))
                .map(|secret| SecretRead {
                    data: [
                        (
                            "accessKeyId".to_string(),
                            secret.access_key_id.clone().into_bytes(),
                        ),
                        (
                            "accessKeySecret".to_string(),
                            format!("secret-of-{}", secret.access_key_id).into_bytes(),
                        ),
                    ]
                    .into(),
                    protected: secret
                        .finalizers
                        .iter()
                        .any(|f| f == SECRET_IN_USE_FINALIZER),
                    deleting: secret.deleting,
                })
        };
        self.0.latency(2, 50).await;
        Ok(result)
    }

    async fn protect_secret(
        &self,
        namespace: &str,
        name: &str,
        protect: bool,
    ) -> Result<(), Error> {
        self.request("protect Secret").await?;
        let result = {
            let mut world = self.0.lock();
            let key = (namespace.to_string(), name.to_string());
            match world.secrets.get(&key).cloned() {
                None => Ok(()),
                Some(mut secret) => {
                    let has = secret
                        .finalizers
                        .iter()
                        .any(|f| f == SECRET_IN_USE_FINALIZER);
                    match (protect, has) {
                        (true, true) | (false, false) => {}
                        (true, false) if secret.deleting => {}
                        (true, false) => {
                            secret.finalizers.push(SECRET_IN_USE_FINALIZER.to_string());
                            world.log(&who(), format!("Secret {} protected", show(&key)));
                            world.store_secret(key, Some(secret));
                        }
                        (false, true) => {
                            secret.finalizers.retain(|f| f != SECRET_IN_USE_FINALIZER);
                            world.log(&who(), format!("Secret {} released", show(&key)));
                            world.store_secret(key, Some(secret));
                        }
                    }
                    Ok(())
                }
            }
        };
        self.reply("protect Secret", result).await
    }

    async fn publish(&self, resource: &EcsInstance, event: &EventSpec) {
        if self.request("publish event").await.is_err() {
            return;
        }
        let mut world = self.0.lock();
        let uid = resource.uid().unwrap_or_default();
        let line = format!(
            "{} event {}: {}",
            show(&key_of(resource)),
            event.reason.as_str(),
            event.note
        );
        world.log(&who(), line);
        world
            .events
            .entry(uid)
            .or_default()
            .push((event.reason, event.note.clone()));
    }

    fn forget(&self, _object: &ObjectRef<EcsInstance>) {}
}

// ---- The clock seam -------------------------------------------------------------------------

/// Virtual wall-clock time (a fixed epoch plus tokio's virtual time) and seeded jitter.
pub struct SimClock(pub Arc<Shared>);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        epoch() + virtual_now()
    }

    fn unit(&self) -> f64 {
        self.0.lock().rng.random()
    }
}

/// A status as the API server stores it and returns it: through its JSON (times to the second).
fn stored_form(status: &EcsInstanceStatus) -> EcsInstanceStatus {
    let json = serde_json::to_string(status).expect("a status always serializes");
    serde_json::from_str(&json).expect("a status parses back")
}
