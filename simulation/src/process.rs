//! A controller process: the real [`Shell`] with its own memory, a work queue, and a watch cache
//! that lags the store. Dropping it (and aborting its tasks) is a crash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ecs_client::{Credentials, CredentialsProvider};
use ecs_instance_controller::{
    cached::CachedEcsInstance,
    decision,
    pacing::Timings,
    reconciler::{self, Error, Outcome, Shell, View},
    resource::{EcsInstance, SECRET_IN_USE_FINALIZER},
};
use kube::ResourceExt;
use tokio::task::JoinHandle;

use crate::world::{
    ACTOR, Actor, Change, Key, Shared, SimClock, SimCloud, SimCluster, SimSecret, show,
};

pub type SimShell = Shell<SimCloud, SimCluster>;

/// A pass in flight.
type PassHandle = JoinHandle<Result<Outcome, Error>>;

/// Passes one process runs at once.
const CONCURRENCY: usize = 3;

pub struct Process {
    pub id: u32,
    shell: Arc<SimShell>,
    /// What the watch cache holds: the controller's own slim copy of each resource.
    cache: BTreeMap<Key, Arc<CachedEcsInstance>>,
    secrets: BTreeMap<Key, SimSecret>,
    /// Object → when to reconcile it.
    queue: BTreeMap<Key, Duration>,
    running: BTreeMap<Key, (Arc<EcsInstance>, PassHandle)>,
    housekeeping: Vec<JoinHandle<()>>,
    /// How far the watch has read the store's changes.
    cursor: usize,
    /// How long a change takes to reach this process's cache.
    pub lag: Duration,
}

impl Process {
    pub fn new(id: u32, shared: &Arc<Shared>, timings: Timings, lag: Duration) -> Self {
        let mut shell = Shell::new(
            SimCloud(shared.clone()),
            SimCluster(shared.clone()),
            Arc::new(SimClock(shared.clone())),
            timings,
        );
        shell.own_credentials = Some(CredentialsProvider::fixed(Credentials::new(
            "LTAIaccountA1",
            "secret-of-LTAIaccountA1",
            None,
        )));
        Process {
            id,
            shell: Arc::new(shell),
            cache: BTreeMap::new(),
            secrets: BTreeMap::new(),
            queue: BTreeMap::new(),
            running: BTreeMap::new(),
            housekeeping: Vec::new(),
            cursor: 0,
            lag,
        }
    }

    /// A crash: every task of the process is dropped wherever it is.
    pub fn crash(self) {
        for (_, (_, handle)) in self.running {
            handle.abort();
        }
        for handle in self.housekeeping {
            handle.abort();
        }
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn next_due(&self) -> Option<Duration> {
        self.queue.values().min().copied()
    }

    fn secret_needed(&self, namespace: &str, name: &str) -> bool {
        self.cache
            .values()
            .any(|resource| reconciler::needs_secret(resource, namespace, name))
    }

    fn release_secret_later(&mut self, shared: &Shared, key: Key) {
        let needed = self.secret_needed(&key.0, &key.1);
        shared.lock().log(
            &format!("P{}", self.id),
            format!(
                "Secret {}: release its in-use finalizer? {}",
                show(&key),
                !needed
            ),
        );
        let shell = self.shell.clone();
        let actor = Actor {
            process: self.id,
            uid: String::new(),
            key: key.clone(),
            pass: 0,
        };
        self.housekeeping
            .push(tokio::spawn(ACTOR.scope(actor, async move {
                // As production: retried until done, `needed` as the cache said at the event.
                shell
                    .release_secret_until_done(&key.0, &key.1, move || needed)
                    .await;
            })));
    }

    /// The watches: applies the store's changes that are older than this process's lag.
    pub fn sync(&mut self, shared: &Shared, now: Duration) {
        let changes: Vec<Change> = {
            let world = shared.lock();
            let mut ready = Vec::new();
            while let Some((at, change)) = world.changes.get(self.cursor) {
                if *at + self.lag > now {
                    break;
                }
                ready.push(change.clone());
                self.cursor += 1;
            }
            ready
        };
        for change in changes {
            match change {
                Change::Instance(key, Some(resource)) => {
                    let resource = Arc::new(CachedEcsInstance::from(EcsInstance::clone(&resource)));
                    let wake = self.cache.get(&key).is_none_or(|old| {
                        reconciler::relevant_change(old) != reconciler::relevant_change(&resource)
                    });
                    self.cache.insert(key.clone(), resource);
                    if wake {
                        self.queue.insert(key, now);
                    }
                }
                Change::Instance(key, None) => {
                    if let Some(resource) = self.cache.remove(&key) {
                        self.queue.remove(&key);
                        self.shell.forget(&resource.object_ref());
                        if let Some(reference) = &resource.spec.credentials_ref {
                            self.release_secret_later(
                                shared,
                                (key.0.clone(), reference.name.clone()),
                            );
                        }
                    }
                }
                Change::Secret(key, secret) => {
                    self.shell.secrets.changed(&key.0, &key.1);
                    if let Some(secret) = &secret
                        && secret
                            .finalizers
                            .iter()
                            .any(|f| f == SECRET_IN_USE_FINALIZER)
                        && !self.secret_needed(&key.0, &key.1)
                    {
                        self.release_secret_later(shared, key.clone());
                    }
                    match secret {
                        Some(secret) => self.secrets.insert(key.clone(), secret),
                        None => self.secrets.remove(&key),
                    };
                    let referencing: Vec<Key> = self
                        .cache
                        .iter()
                        .filter(|(k, r)| k.0 == key.0 && reconciler::names_secret(r, &key.1))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in referencing {
                        self.queue.insert(k, now);
                    }
                }
            }
        }
        self.housekeeping.retain(|h| !h.is_finished());
    }

    /// What a pass of `resource` sees of the others: the controller's own `reconciler::view`
    /// on this process's cache.
    fn view(&self, resource: &EcsInstance) -> View {
        reconciler::view(resource, self.cache.values().map(Arc::as_ref))
    }

    /// Collects finished passes (and requeues), then starts the passes that are due.
    pub async fn step(&mut self, shared: &Shared, now: Duration) {
        let finished: Vec<Key> = self
            .running
            .iter()
            .filter(|(_, (_, handle))| handle.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in finished {
            let (resource, handle) = self.running.remove(&key).expect("running");
            let result = handle.await.expect("a pass never panics");
            let (line, next) = match &result {
                Ok(Outcome::Requeue(delay)) => (format!("requeue in {delay:?}"), Some(*delay)),
                Ok(Outcome::AwaitChange) => ("await change".to_string(), None),
                Err(error) => {
                    let delay = self.shell.retry_delay(resource.as_ref(), error);
                    (format!("error ({error}); retry in {delay:?}"), Some(delay))
                }
            };
            shared.lock().log(
                &format!("P{}", self.id),
                format!("{} pass done: {line}", show(&key)),
            );
            if let Some(delay) = next {
                let due = now + delay;
                let entry = self.queue.entry(key).or_insert(due);
                *entry = (*entry).min(due);
            }
        }
        let due: Vec<Key> = self
            .queue
            .iter()
            .filter(|(key, at)| **at <= now && !self.running.contains_key(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            if self.running.len() >= CONCURRENCY {
                break;
            }
            self.queue.remove(&key);
            let Some(resource) = self
                .cache
                .get(&key)
                .map(|cached| Arc::new(cached.to_resource().expect("the cached status parses")))
            else {
                continue;
            };
            let view = self.view(&resource);
            let shell = self.shell.clone();
            let actor = Actor {
                process: self.id,
                uid: resource.uid().unwrap_or_default(),
                key: key.clone(),
                pass: shared.lock().next_pass(),
            };
            shared.lock().log(
                &format!("P{}", self.id),
                format!(
                    "{} pass starts (rv {:?}, deleting {}, policy {:?}, claimants {})",
                    show(&key),
                    resource.resource_version(),
                    decision::is_deleting(&resource),
                    resource.spec.deletion_policy,
                    view.claimants.len()
                ),
            );
            let passed = resource.clone();
            let handle = tokio::spawn(
                ACTOR.scope(actor, async move { shell.reconcile(&passed, &view).await }),
            );
            self.running.insert(key, (resource, handle));
        }
    }
}
