//! The driver: one seed, one schedule. An active phase of random user actions, faults, crashes
//! and brief dual leadership, then a quiet phase that checks liveness. Invariants are checked
//! after every step (and at the moment of the act for the cloud and finalizer ones).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_instance_controller::{
    pacing::Timings,
    reasons::{Kind, RECHECK_ANNOTATION, Reason},
    resource::{
        CredentialsRef, DeletionPolicy, EcsInstance, EcsInstanceSpec, OnDelete, StopPolicy,
    },
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::process::Process;
use crate::world::{Key, Shared, SimInstance, SimSecret, World, show, start_clock, virtual_now};

/// How big one seed is.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Steps of the active phase (one random action at most per step).
    pub steps: u32,
    /// Resources created at most.
    pub max_resources: u32,
    /// The quiet phase's limit, before and after a person orphans what is stalled.
    pub quiet: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            steps: 120,
            max_resources: 8,
            quiet: Duration::from_secs(2 * 3600),
        }
    }
}

/// What one seed did.
pub struct Report {
    pub seed: u64,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    pub steps: u64,
}

/// The namespaces, their Secret's first AccessKeyId.
const NAMESPACES: &[(&str, &str)] = &[
    ("team-a", "LTAIaccountA1"),
    ("team-a2", "LTAIaccountA2"),
    ("team-b", "LTAIaccountB1"),
];
const KEYS: &[&str] = &["LTAIaccountA1", "LTAIaccountA2", "LTAIaccountB1"];
const SECRET: &str = "creds";
const REGION: &str = "cn-hangzhou";

/// The controller's timings: its defaults. `release_resend` (5 min) stays far above the 30 s the
/// simulated cloud takes to stop listing a released instance.
pub fn timings() -> Timings {
    Timings::default()
}

struct Driver {
    shared: Arc<Shared>,
    config: Config,
    processes: Vec<Process>,
    next_process: u32,
    created: u32,
    next_instance: u32,
    steps: u64,
}

pub fn run_seed(seed: u64, config: Config) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        start_clock();
        let shared = Shared::new(seed);
        let mut driver = Driver {
            shared: shared.clone(),
            config,
            processes: Vec::new(),
            next_process: 1,
            created: 0,
            next_instance: 0,
            steps: 0,
        };
        driver.setup();
        driver.run().await;
        let mut world = shared.lock();
        let (trace, violations) = (
            std::mem::take(&mut world.trace),
            std::mem::take(&mut world.violations),
        );
        drop(world);
        for process in driver.processes.drain(..) {
            process.crash();
        }
        Report {
            seed,
            trace,
            violations,
            steps: driver.steps,
        }
    })
}

impl Driver {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.lock()
    }

    fn setup(&mut self) {
        let mut world = self.world();
        for (ns, key) in NAMESPACES {
            create_secret(&mut world, ns, key);
        }
        drop(world);
        self.start_process();
    }

    fn start_process(&mut self) {
        let lag = self.world().millis(0, 2_000);
        let id = self.next_process;
        self.next_process += 1;
        self.world()
            .log("driver", format!("P{id} starts (watch lag {lag:?})"));
        self.processes
            .push(Process::new(id, &self.shared, timings(), lag));
    }

    fn crash(&mut self, index: usize) {
        let process = self.processes.remove(index);
        let (id, running) = (process.id, process.running());
        self.world().log(
            "driver",
            format!("P{id} crashes ({running} passes in flight)"),
        );
        process.crash();
    }

    /// One step: time passes (passes in flight progress), the processes catch up with the store,
    /// collect and start passes; then the invariants.
    async fn step(&mut self, pause: Duration) {
        tokio::time::sleep(pause).await;
        self.shared.tick();
        let now = virtual_now();
        for process in &mut self.processes {
            process.sync(&self.shared, now);
            process.step(&self.shared, now).await;
        }
        self.steps += 1;
        self.check();
    }

    async fn run(&mut self) {
        for _ in 0..self.config.steps {
            let pause = self.world().millis(0, 3_000);
            self.step(pause).await;
            if !self.world().violations.is_empty() {
                return;
            }
            if self.world().chance(0.35) {
                self.act();
            }
            self.chaos();
        }
        self.quiet().await;
    }

    /// Crashes, restarts, dual leadership.
    fn chaos(&mut self) {
        let roll: f64 = self.world().rng.random();
        match self.processes.len() {
            0 if roll < 0.3 => self.start_process(),
            1 if roll < 0.03 => self.crash(0),
            1 if roll < 0.05 => {
                self.world().log("driver", "dual leadership begins");
                self.start_process();
            }
            2 if roll < 0.15 => {
                let index = self.world().rng.random_range(0..2);
                self.crash(index);
            }
            _ => {}
        }
    }

    /// One random user action.
    fn act(&mut self) {
        let shared = self.shared.clone();
        let mut world = shared.lock();
        let roll = world.rng.random_range(0..100);
        let live: Vec<Key> = world.objects.keys().cloned().collect();
        match roll {
            0..=29 if self.created < self.config.max_resources => {
                let pair = world.chance(0.25);
                let ns = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                let account = if ns == "team-b" { "B" } else { "A" };
                let id = self.new_instance(&mut world, account);
                self.create_resource(&mut world, ns, &id);
                if pair {
                    // Another resource naming the same instance, created the same second,
                    // sometimes from another namespace (perhaps another account).
                    let other = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                    self.create_resource(&mut world, other, &id);
                }
            }
            0..=44 => {
                if let Some(key) = live.choose(&mut world.rng).cloned()
                    && world.objects[&key].metadata.deletion_timestamp.is_none()
                {
                    world.log("user", format!("deletes {}", show(&key)));
                    world.delete_object(&key);
                }
            }
            45..=54 => {
                if let Some(key) = live.choose(&mut world.rng).cloned() {
                    set_orphan(&mut world, &key, "user");
                }
            }
            55..=59 => {
                let ns = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                let key = (ns.to_string(), SECRET.to_string());
                if world.secrets.contains_key(&key) {
                    world.log("user", format!("deletes Secret {}", show(&key)));
                    world.delete_secret(&key);
                } else if !world.terminating.contains(ns) {
                    let access_key = NAMESPACES.iter().find(|n| n.0 == ns).expect("ns").1;
                    world.log("user", format!("recreates Secret {}", show(&key)));
                    create_secret(&mut world, ns, access_key);
                }
            }
            60..=67 => {
                let ns = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                let key = (ns.to_string(), SECRET.to_string());
                let access_key = *KEYS.choose(&mut world.rng).expect("keys");
                if let Some(mut secret) = world.secrets.get(&key).cloned() {
                    world.log(
                        "user",
                        format!("rotates Secret {} to {access_key}", show(&key)),
                    );
                    secret.access_key_id = access_key.to_string();
                    world.store_secret(key, Some(secret));
                }
            }
            68..=71 => {
                let ns = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                world.log(
                    "user",
                    format!("prunes namespace {ns} (Secret and resources)"),
                );
                world.delete_secret(&(ns.to_string(), SECRET.to_string()));
                for key in live.iter().filter(|k| k.0 == ns) {
                    world.delete_object(key);
                }
            }
            72..=74 => {
                let ns = NAMESPACES.choose(&mut world.rng).expect("namespaces").0;
                if !world.terminating.contains(ns) {
                    world.log("user", format!("deletes namespace {ns}"));
                    world.terminating.insert(ns.to_string());
                    world.delete_secret(&(ns.to_string(), SECRET.to_string()));
                    for key in live.iter().filter(|k| k.0 == ns) {
                        world.delete_object(key);
                    }
                    world.namespace_cleanup();
                }
            }
            75..=84 => {
                if let Some(key) = live.choose(&mut world.rng).cloned()
                    && let Some(mut resource) = world.objects.get(&key).cloned()
                {
                    let at = world.now.as_millis().to_string();
                    world.log("user", format!("annotates {} for a recheck", show(&key)));
                    resource
                        .annotations_mut()
                        .insert(RECHECK_ANNOTATION.to_string(), at);
                    world.store_object(resource);
                }
            }
            _ => {
                let running: Vec<String> = world
                    .instances
                    .values()
                    .filter(|i| i.status == InstanceStatus::Running && i.gone_at.is_none())
                    .map(|i| i.id.clone())
                    .collect();
                if let Some(id) = running.choose(&mut world.rng).cloned() {
                    stop_by_hand(&mut world, &id);
                }
            }
        }
    }

    fn new_instance(&mut self, world: &mut World, account: &'static str) -> String {
        self.next_instance += 1;
        let id = format!("i-sim{:03}", self.next_instance);
        let status = if world.chance(0.6) {
            InstanceStatus::Running
        } else {
            InstanceStatus::Stopped
        };
        world.log(
            "cloud",
            format!("instance {id} of account {account} is {status}"),
        );
        world.instances.insert(
            id.clone(),
            SimInstance {
                id: id.clone(),
                region: REGION.to_string(),
                account,
                status,
                stopped_at: None,
                tags: BTreeMap::new(),
                released_at: None,
                gone_at: None,
            },
        );
        id
    }

    fn create_resource(&mut self, world: &mut World, ns: &str, instance: &str) {
        if world.terminating.contains(ns) {
            world.log(
                "user",
                format!("create in {ns} refused: the namespace is terminating"),
            );
            return;
        }
        self.created += 1;
        let name = format!("r{}", self.created);
        let stop = match world.rng.random_range(0..10) {
            0..=5 => StopPolicy::Stop,
            6 => StopPolicy::ForceStop,
            _ => StopPolicy::Wait,
        };
        let force = world.chance(0.15);
        let credentials_ref = (!world.chance(0.15)).then(|| CredentialsRef {
            name: SECRET.to_string(),
        });
        let mut resource = EcsInstance::new(
            &name,
            EcsInstanceSpec {
                instance_id: instance.to_string(),
                region_id: REGION.to_string(),
                deletion_policy: None,
                on_delete: OnDelete {
                    stop,
                    force,
                    ..OnDelete::default()
                },
                credentials_ref,
            },
        );
        let second = Timestamp::from_second(world.timestamp().as_second()).expect("a second");
        resource.metadata.namespace = Some(ns.to_string());
        resource.metadata.uid = Some(world.uid());
        resource.metadata.generation = Some(1);
        resource.metadata.creation_timestamp = Some(Time(second));
        world.log(
            "user",
            format!(
                "creates {ns}/{name} ({}) for {instance}: stop {stop:?}, force {force}, Secret {}",
                resource.uid().unwrap_or_default(),
                resource.spec.credentials_ref.is_some()
            ),
        );
        world.store_object(resource);
    }

    /// Invariant 4 on every resource that went away, and the store's sanity.
    fn check(&mut self) {
        let mut world = self.world();
        let graves = std::mem::take(&mut world.graves);
        for grave in &graves {
            check_grave(&mut world, grave);
        }
    }

    /// Faults stop, one process runs; every deletion must end, unless a person is needed; then
    /// a person orphans those and they must end too.
    async fn quiet(&mut self) {
        {
            let mut world = self.world();
            world.faults.cloud = false;
            world.faults.kube = false;
            world.log(
                "driver",
                "quiet phase: no more faults, crashes or user actions",
            );
        }
        while self.processes.len() > 1 {
            self.crash(0);
        }
        if self.processes.is_empty() {
            self.start_process();
        }
        {
            // Someone stops the instances that wait to be stopped by hand.
            let mut world = self.world();
            let waiting: Vec<String> = world
                .objects
                .values()
                .filter(|r| r.spec.on_delete.stop == StopPolicy::Wait)
                .map(|r| r.spec.instance_id.clone())
                .collect();
            for id in waiting {
                if world
                    .instances
                    .get(&id)
                    .is_some_and(|i| i.status == InstanceStatus::Running)
                {
                    stop_by_hand(&mut world, &id);
                }
            }
        }
        let limit = virtual_now() + self.config.quiet;
        self.settle(limit, true).await;
        // A person looks at what is stalled and gives up on those instances.
        {
            let mut world = self.world();
            let stalled: Vec<(Key, String)> = world
                .objects
                .iter()
                .filter(|(_, r)| r.metadata.deletion_timestamp.is_some())
                .map(|(k, r)| (k.clone(), ready_reason(r)))
                .collect();
            for (key, reason) in stalled {
                if !needs_person(&reason) {
                    world.violation(format!(
                        "invariant 5: {} still deleting after the quiet phase, reason {reason:?}",
                        show(&key)
                    ));
                }
                set_orphan(&mut world, &key, "person");
            }
            if !world.violations.is_empty() {
                return;
            }
        }
        let limit = virtual_now() + self.config.quiet;
        self.settle(limit, false).await;
        let mut world = self.world();
        let left: Vec<String> = world
            .objects
            .iter()
            .filter(|(_, r)| r.metadata.deletion_timestamp.is_some())
            .map(|(k, r)| format!("{} ({})", show(k), ready_reason(r)))
            .collect();
        if !left.is_empty() {
            world.violation(format!(
                "invariant 5: still deleting after orphaning: {left:?}"
            ));
        }
        let terminating: Vec<String> = world.terminating.iter().cloned().collect();
        if !terminating.is_empty() {
            let secrets: Vec<String> = world
                .secrets
                .iter()
                .filter(|(k, _)| terminating.contains(&k.0))
                .map(|(k, s)| format!("{} {:?}", show(k), s.finalizers))
                .collect();
            world.violation(format!(
                "invariant 5: namespaces {terminating:?} never went away (Secrets left: {secrets:?})"
            ));
        }
    }

    /// Steps until nothing is deleting (apart from what waits for a person) or `limit`.
    async fn settle(&mut self, limit: Duration, accept_stalled: bool) {
        // Delete whatever is left, as a user tearing down would.
        {
            let mut world = self.world();
            let keys: Vec<Key> = world.objects.keys().cloned().collect();
            for key in keys {
                world.delete_object(&key);
            }
        }
        loop {
            let now = virtual_now();
            if now >= limit {
                return;
            }
            let busy = self.processes.iter().any(|p| p.running() > 0);
            let next = self
                .processes
                .iter()
                .filter_map(Process::next_due)
                .min()
                .unwrap_or(limit);
            let pause = if busy {
                Duration::from_millis(500)
            } else {
                next.saturating_sub(now)
                    .clamp(Duration::from_millis(100), Duration::from_secs(60))
            };
            self.step(pause).await;
            let world = self.world();
            if !world.violations.is_empty() {
                return;
            }
            // Stalled (for a person) on the latest generation, the deletion included.
            let waiting = accept_stalled
                && world.objects.values().all(|r| {
                    needs_person(&ready_reason(r))
                        && r.status.as_ref().and_then(|s| s.observed_generation)
                            == r.metadata.generation
                });
            if (world.objects.is_empty() || waiting) && world.terminating.is_empty() && !busy {
                return;
            }
        }
    }
}

/// The Stalled reasons only a person can clear (the simulation's person sets Orphan).
fn needs_person(reason: &str) -> bool {
    matches!(
        reason,
        "InstanceNoLongerVisible"
            | "OwnedByAnotherResource"
            | "CredentialsUnavailable"
            | "CredentialsRejected"
            | "ReleaseNotConfirmed"
    )
}

fn ready_reason(resource: &EcsInstance) -> String {
    resource
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

fn create_secret(world: &mut World, ns: &str, access_key: &str) {
    let uid = world.uid();
    world.store_secret(
        (ns.to_string(), SECRET.to_string()),
        Some(SimSecret {
            uid,
            access_key_id: access_key.to_string(),
            finalizers: Vec::new(),
            deleting: false,
        }),
    );
}

fn set_orphan(world: &mut World, key: &Key, who: &str) {
    if let Some(mut resource) = world.objects.get(key).cloned()
        && resource.spec.deletion_policy != Some(DeletionPolicy::Orphan)
    {
        world.log(who, format!("sets {} to deletionPolicy Orphan", show(key)));
        resource.spec.deletion_policy = Some(DeletionPolicy::Orphan);
        resource.metadata.generation = Some(resource.metadata.generation.unwrap_or(1) + 1);
        world.store_object(resource);
    }
}

fn stop_by_hand(world: &mut World, id: &str) {
    let now = world.now;
    let delay = world.millis(2_000, 20_000);
    if let Some(instance) = world.instances.get_mut(id) {
        instance.status = InstanceStatus::Stopping;
        instance.stopped_at = Some(now + delay);
        world.log("operator", format!("stops {id} by hand"));
    }
}

/// The RequestIds a note names (`RequestId X`).
fn request_ids(note: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = note;
    while let Some(at) = rest.find("RequestId ") {
        rest = &rest[at + "RequestId ".len()..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !id.is_empty() {
            ids.push(id);
        }
    }
    ids
}

/// Invariant 4: a resource's final word agrees with the cloud's call log.
fn check_grave(world: &mut World, grave: &crate::world::Grave) {
    let deletes: Vec<&crate::world::CallRecord> = world
        .calls
        .iter()
        .filter(|c| c.action == "DeleteInstance" && c.processed && c.uid == grave.uid)
        .collect();
    let ours: Vec<String> = deletes.iter().map(|c| c.request_id.clone()).collect();
    let key = show(&grave.key);
    // The final word is the last event, if it is a final one: an earlier final event whose
    // finalizer removal failed was not the end (a later pass may have decided otherwise), and
    // the final event of the last pass may have been dropped by a fault.
    let final_reason = grave
        .events
        .last()
        .filter(|(reason, _)| reason.kind() == Kind::Final)
        .map(|(reason, note)| (*reason, note.clone()));
    let Some((reason, note)) = final_reason else {
        // No final event: the stored status is the record; a RequestId it names is ours.
        let recorded = grave
            .resource
            .status
            .as_ref()
            .and_then(|s| s.release.as_ref()?.request_id.clone());
        if let Some(id) = recorded.filter(|id| !ours.contains(id)) {
            world.violation(format!(
                "invariant 4: {key} ({}) was removed with status.release naming RequestId {id}, the log has {ours:?}",
                grave.uid
            ));
        }
        return;
    };
    let problem = match reason {
        Reason::Released if ours.is_empty() => Some(format!(
            "invariant 4: {key} ({}) ended Released without a processed DeleteInstance of its own: {note}",
            grave.uid
        )),
        Reason::Released => request_ids(&note)
            .into_iter()
            .find(|id| !ours.contains(id))
            .map(|id| {
                format!(
                    "invariant 4: {key} ({}) ended Released naming RequestId {id}, the log has {ours:?}",
                    grave.uid
                )
            }),
        Reason::AlreadyGone | Reason::NeverObserved | Reason::DuplicateRemoved if !ours.is_empty() => {
            Some(format!(
                "invariant 4: {key} ({}) ended {} but its DeleteInstance {ours:?} was processed",
                grave.uid,
                reason.as_str()
            ))
        }
        Reason::Orphaned
            if !ours.is_empty()
                && !note.contains("DeleteInstance was accepted")
                && !note.contains("DeleteInstance was sent") =>
        {
            Some(format!(
                "invariant 4: {key} ({}) ended Orphaned without saying its DeleteInstance {ours:?} was processed: {note}",
                grave.uid
            ))
        }
        _ => None,
    };
    if let Some(problem) = problem {
        world.violation(problem);
    }
}
