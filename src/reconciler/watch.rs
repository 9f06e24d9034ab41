//! Watch pacing: how the resource and Secret watches come back after an API server outage, and
//! which changes wake the reconciler.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};

use super::{key_of, queue::Key};
use crate::{
    cached::CachedEcsInstance, reasons::RECHECK_ANNOTATION, resource::TAKE_OVER_ANNOTATION,
};

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
/// work queue adds none). A 410 Gone (the API server no longer has our resourceVersion, as
/// after its restart) re-lists at once, unless the last one came less than [`REGONE_WITHIN`] ago (no tight list loop); the backoff starts over once the watch delivers
/// objects again (not on `Init`, which kube-runtime emits before the list). An error passes
/// through at once (health, logs); the pause comes before the next poll.
pub fn paced<K: Send + 'static>(
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

/// Whether a watch cache has listed, for any number of waiters. kube-runtime's
/// `Store::wait_until_ready` keeps one waker: of the tasks waiting on it only the last to poll
/// is woken (the others waited for ever: at a start, the first passes of 63 resources and any
/// Secret release waiting for the list). One task waits on it here and tells everyone.
#[derive(Clone)]
pub struct Listed(tokio::sync::watch::Receiver<bool>);

impl Listed {
    pub fn of<K>(store: &Store<K>) -> Self
    where
        K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let (listed, receiver) = tokio::sync::watch::channel(false);
        let store = store.clone();
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                listed.send_replace(true);
            }
        });
        Listed(receiver)
    }

    /// Waits until the cache has listed; an error if its watch stopped before.
    pub async fn wait(&self) -> Result<(), ()> {
        self.0
            .clone()
            .wait_for(|listed| *listed)
            .await
            .map(|_| ())
            .map_err(|_| ())
    }

    pub fn now(&self) -> bool {
        *self.0.borrow()
    }
}

/// Whether a watch event bringing `resource` wakes its pass: the cache does not hold it yet, or
/// holds a copy whose [`relevant_change`] differs. Compared with the copy the event replaces, so
/// nothing is kept beside the cache (kube-runtime's `predicate_filter` keeps a map with every
/// object's reference and last hash: about 2 MiB at 10,000 resources).
pub fn wakes(cache: &Store<CachedEcsInstance>, resource: &CachedEcsInstance) -> bool {
    cache
        .get(&ObjectRef::from_obj(resource))
        .is_none_or(|cached| relevant_change(&cached) != relevant_change(resource))
}

/// Only changes that matter wake the reconciler: the controller's own status writes do not
/// (they would double the DescribeInstances calls); spec, finalizer, deletion and the recheck
/// annotation do.
pub fn relevant_change(resource: &CachedEcsInstance) -> Option<u64> {
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
    // Taking an instance over is a person's act on a Stalled resource: look at once.
    resource
        .annotations()
        .get(TAKE_OVER_ANNOTATION)
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Which Secret events should wake the resources that name the Secret: its first sight, a
/// change of its content (a new resourceVersion with the same finalizers) and its deletion. Not
/// a change of its finalizers alone: adding our in-use finalizer would otherwise wake every
/// resource that names the Secret, all 10,000 of them in a large namespace.
#[derive(Default)]
pub struct SecretChanges(std::sync::Mutex<HashMap<(String, String), SecretSeen>>);

struct SecretSeen {
    resource_version: Option<String>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl SecretChanges {
    pub fn wakes(&self, secret: &PartialObjectMeta<Secret>) -> bool {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let seen = SecretSeen {
            resource_version: secret.resource_version(),
            finalizers: secret.finalizers().to_vec(),
            deleting: secret.metadata.deletion_timestamp.is_some(),
        };
        let mut known = self.0.lock().expect("secret changes lock");
        let wakes = match known.get(&key) {
            None => true,
            Some(before) => {
                before.deleting != seen.deleting
                    || (before.resource_version != seen.resource_version
                        && before.finalizers == seen.finalizers)
            }
        };
        known.insert(key, seen);
        wakes
    }
}

/// The resources of `store` in `namespace` that name the Secret `secret`.
pub fn referencing(
    store: &Store<CachedEcsInstance>,
    namespace: Option<&str>,
    secret: &str,
) -> Vec<Key> {
    store
        .state()
        .iter()
        .filter(|resource| resource.namespace().as_deref() == namespace)
        .filter(|resource| names_secret(resource, secret))
        .map(|resource| key_of(resource))
        .collect()
}

pub fn names_secret(resource: &CachedEcsInstance, secret: &str) -> bool {
    resource
        .spec
        .credentials_ref
        .as_ref()
        .is_some_and(|r| r.name == secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(rv: &str, finalizers: &[&str], deleting: bool) -> PartialObjectMeta<Secret> {
        let mut secret = PartialObjectMeta::<Secret>::default();
        secret.metadata.namespace = Some("team-a".into());
        secret.metadata.name = Some("creds".into());
        secret.metadata.resource_version = Some(rv.into());
        secret.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        if deleting {
            secret.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
        }
        secret
    }

    #[tokio::test]
    async fn every_task_waiting_for_the_list_is_woken() {
        let (store, mut writer) = kube::runtime::reflector::store::<PartialObjectMeta<Secret>>();
        let listed = Listed::of(&store);
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let listed = listed.clone();
                tokio::spawn(async move { listed.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!listed.now());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap()
                .unwrap();
        }
        assert!(listed.now());
    }

    #[test]
    fn only_content_changes_and_deletion_of_a_secret_wake_its_resources() {
        let changes = SecretChanges::default();
        assert!(changes.wakes(&secret("1", &[], false)), "first sight");
        assert!(!changes.wakes(&secret("1", &[], false)), "a re-list");
        assert!(
            !changes.wakes(&secret("2", &["in-use"], false)),
            "our in-use finalizer"
        );
        assert!(changes.wakes(&secret("3", &["in-use"], false)), "rotated");
        assert!(changes.wakes(&secret("4", &["in-use"], true)), "deleted");
    }
}
