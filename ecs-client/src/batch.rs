//! Coalesces concurrent single-instance requests into calls for many instances: lookups into
//! `DescribeInstances` calls of up to 100 IDs, tag requests with one tag set into `TagResources`
//! calls of up to 50.
//!
//! The first request for a key opens a batch and starts its timer; requests for the same key join
//! it until it holds `max_ids` distinct IDs, or the window has passed *and* the call would be
//! admitted by the rate limiter (`ready`), whichever comes first — so while the limiter makes
//! calls wait, batches grow instead of queueing one ID each. The batch then runs in its own task
//! (so no waiter's cancellation cancels it) and every waiter gets its own answer from the call's
//! result ([`BatchResult`]), or a clone of the call's error. A `DescribeInstances` answer that
//! listed an instance the call did not ask for is such an error (see
//! `EcsClient::describe_instances`), so then no lookup of the batch reads absent.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::{EcsError, ErrorKind};
use crate::model::{Instance, RequestId};

/// Makes one call for a batch of (distinct) IDs.
pub(crate) type Fetch<T> =
    Box<dyn FnOnce(Vec<String>) -> BoxFuture<'static, Result<T, EcsError>> + Send>;

/// Resolves when the batch's call would be admitted at once (the rate limiter's turn).
pub(crate) type Ready = BoxFuture<'static, ()>;

/// What a call for a batch answers each of its waiters.
pub(crate) trait BatchResult: Send + 'static {
    type Answer: Send + 'static;
    /// The answer for the waiter that asked about `id`.
    fn answer_for(&self, id: &str) -> Self::Answer;
}

/// `DescribeInstances`: the instance, or `None` when it was not listed.
impl BatchResult for Vec<Instance> {
    type Answer = Option<Instance>;
    fn answer_for(&self, id: &str) -> Option<Instance> {
        self.iter().find(|i| i.instance_id == id).cloned()
    }
}

/// `TagResources`: one call, one RequestId for every instance it tagged.
impl BatchResult for RequestId {
    type Answer = RequestId;
    fn answer_for(&self, _id: &str) -> RequestId {
        self.clone()
    }
}

type Answer<T> = Result<<T as BatchResult>::Answer, EcsError>;

pub(crate) struct Batcher<K, T: BatchResult> {
    /// The action the batches call, for the error of an abandoned batch.
    action: &'static str,
    window: Duration,
    /// A batch that is not full waits at least this long after the previous call for its key.
    spacing: Duration,
    max_ids: usize,
    pending: Arc<Mutex<HashMap<K, Pending<T>>>>,
    /// When the last call for each key went out.
    last_run: Arc<Mutex<HashMap<K, Instant>>>,
    generations: AtomicU64,
}

struct Pending<T: BatchResult> {
    /// Tells this batch from a later one under the same key, for the timer.
    generation: u64,
    ids: Vec<String>,
    seen: HashSet<String>,
    waiters: Vec<(String, oneshot::Sender<Answer<T>>)>,
    fetch: Fetch<T>,
}

impl<T: BatchResult> Pending<T> {
    async fn run(self) {
        let result = (self.fetch)(self.ids).await;
        for (id, waiter) in self.waiters {
            let answer = match &result {
                Ok(result) => Ok(result.answer_for(&id)),
                Err(error) => Err(error.clone()),
            };
            // A waiter that gave up is no error.
            let _ = waiter.send(answer);
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static, T: BatchResult> Batcher<K, T> {
    pub(crate) fn new(
        action: &'static str,
        window: Duration,
        spacing: Duration,
        max_ids: usize,
    ) -> Self {
        Self {
            action,
            window,
            spacing,
            max_ids: max_ids.max(1),
            pending: Arc::new(Mutex::new(HashMap::new())),
            last_run: Arc::new(Mutex::new(HashMap::new())),
            generations: AtomicU64::new(0),
        }
    }

    /// Asks about `id` in the batch for `key`. `fetch` and `ready` are used only if this request
    /// opens the batch.
    pub(crate) async fn join(&self, key: K, id: &str, fetch: Fetch<T>, ready: Ready) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let batch = pending.entry(key.clone()).or_insert_with(|| {
                let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(close_after(
                    self.pending.clone(),
                    self.last_run.clone(),
                    key.clone(),
                    generation,
                    (self.window, self.spacing),
                    ready,
                ));
                Pending {
                    generation,
                    ids: Vec::new(),
                    seen: HashSet::new(),
                    waiters: Vec::new(),
                    fetch,
                }
            });
            if batch.seen.insert(id.to_owned()) {
                batch.ids.push(id.to_owned());
            }
            batch.waiters.push((id.to_owned(), tx));
            if batch.ids.len() >= self.max_ids {
                pending.remove(&key)
            } else {
                None
            }
        };
        if let Some(batch) = full {
            ran(&self.last_run, key, self.spacing);
            tokio::spawn(batch.run());
        }
        rx.await.unwrap_or_else(|_| {
            Err(EcsError::new(
                self.action,
                ErrorKind::Transport,
                "the batched call was abandoned before it answered",
            ))
        })
    }
}

/// Notes that `key`'s call went out now. Only calls within `spacing` matter: older notes are
/// dropped, so keys that come and go (one tag set per batch of tags, rotated credentials) leave
/// nothing behind.
fn ran<K: Hash + Eq>(last_run: &Mutex<HashMap<K, Instant>>, key: K, spacing: Duration) {
    let mut last_run = last_run.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    last_run.retain(|_, at| now.duration_since(*at) < spacing);
    if !spacing.is_zero() {
        last_run.insert(key, now);
    }
}

/// The batch's timer: when the window ends, `spacing` has passed since the key's last call
/// (requests that trickle in at a steady rate, such as passes started one by one as release
/// turns come, then share calls instead of sending one each) and the call's turn has come, run
/// the batch unless it already ran because it filled up (then a later batch may sit under the
/// same key, told apart by its generation).
async fn close_after<K: Hash + Eq + Clone, T: BatchResult>(
    pending: Arc<Mutex<HashMap<K, Pending<T>>>>,
    last_run: Arc<Mutex<HashMap<K, Instant>>>,
    key: K,
    generation: u64,
    (window, spacing): (Duration, Duration),
    ready: Ready,
) {
    tokio::time::sleep(window).await;
    let previous = {
        let last_run = last_run.lock().unwrap_or_else(|e| e.into_inner());
        last_run.get(&key).copied()
    };
    if let Some(previous) = previous {
        tokio::time::sleep_until(previous + spacing).await;
    }
    ready.await;
    let batch = {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get(&key) {
            Some(batch) if batch.generation == generation => pending.remove(&key),
            _ => None,
        }
    };
    if let Some(batch) = batch {
        ran(&last_run, key, spacing);
        batch.run().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceStatus;
    use futures::FutureExt;
    use tokio::time::Instant;

    fn instance(id: &str) -> Instance {
        Instance {
            instance_id: id.to_owned(),
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-g".into(),
            status: InstanceStatus::Running,
            charge_type: "PostPaid".into(),
            deletion_protection: false,
            lock_reasons: vec![],
            expired_time: None,
            tags: Default::default(),
        }
    }

    /// A fake `DescribeInstances` that records each batch and knows IDs ending in an even digit.
    type Calls = Vec<(Instant, Vec<String>)>;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Calls>>);

    impl Recorder {
        fn fetch(&self) -> Fetch<Vec<Instance>> {
            let calls = self.0.clone();
            Box::new(move |ids: Vec<String>| {
                async move {
                    calls.lock().unwrap().push((Instant::now(), ids.clone()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(ids
                        .iter()
                        .filter(|id| id.ends_with(['0', '2', '4', '6', '8']))
                        .map(|id| instance(id))
                        .collect())
                }
                .boxed()
            })
        }
        fn batches(&self) -> Vec<Vec<String>> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|(_, ids)| ids.clone())
                .collect()
        }
    }

    /// The rate limiter has no calls waiting.
    fn at_once() -> Ready {
        async {}.boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stays_open_until_its_call_would_be_admitted() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        let recorder = Recorder::default();
        let start = Instant::now();
        // The limiter admits the next call only after 500 ms: lookups arriving meanwhile join.
        let tasks: Vec<_> = (0..40)
            .map(|n| {
                let (b, r) = (batcher.clone(), recorder.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10 * n)).await;
                    let turn = async move {
                        tokio::time::sleep_until(start + Duration::from_millis(500)).await
                    }
                    .boxed();
                    b.join("k", &format!("i-{n:04}"), r.fetch(), turn).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let calls = recorder.0.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "one call for lookups spread over 400 ms");
        assert_eq!(calls[0].1.len(), 40);
        assert_eq!(calls[0].0 - start, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_trickling_in_share_calls_spaced_apart() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::from_secs(1),
            100,
        ));
        let recorder = Recorder::default();
        let start = Instant::now();
        // One lookup every 100 ms for 3 s: one call at once, then one a second.
        let tasks: Vec<_> = (0..30)
            .map(|n| {
                let (b, r) = (batcher.clone(), recorder.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100 * n)).await;
                    b.join("k", &format!("i-{n:04}"), r.fetch(), at_once())
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let calls = recorder.0.lock().unwrap().clone();
        let at: Vec<Duration> = calls.iter().map(|(t, _)| *t - start).collect();
        assert_eq!(calls.len(), 4, "{at:?}");
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{at:?}");
        }
        assert_eq!(calls.iter().map(|(_, ids)| ids.len()).sum::<usize>(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_become_batches_of_at_most_100() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        let recorder = Recorder::default();
        let tasks: Vec<_> = (0..250)
            .map(|n| {
                let (b, r) = (batcher.clone(), recorder.clone());
                tokio::spawn(async move {
                    let id = format!("i-{n:04}");
                    (id.clone(), b.join("k", &id, r.fetch(), at_once()).await)
                })
            })
            .collect();
        for task in tasks {
            let (id, answer) = task.await.unwrap();
            let found = answer.unwrap();
            if id.ends_with(['0', '2', '4', '6', '8']) {
                assert_eq!(found.unwrap().instance_id, id);
            } else {
                assert_eq!(found, None, "{id}");
            }
        }
        let mut sizes: Vec<usize> = recorder.batches().iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, 100, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_ids_are_fetched_once_and_keys_are_separate() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        let recorder = Recorder::default();
        let lookups = ["a", "a", "a", "b"].map(|key| {
            let (b, r) = (batcher.clone(), recorder.clone());
            tokio::spawn(async move { b.join(key, "i-0002", r.fetch(), at_once()).await })
        });
        for lookup in lookups {
            assert!(lookup.await.unwrap().unwrap().is_some());
        }
        let batches = recorder.batches();
        assert_eq!(batches, vec![vec!["i-0002".to_string()]; 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_closes_a_batch() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        let recorder = Recorder::default();
        let start = Instant::now();
        let first = {
            let (b, r) = (batcher.clone(), recorder.clone());
            tokio::spawn(async move { b.join("k", "i-0001", r.fetch(), at_once()).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        batcher
            .join("k", "i-0003", recorder.fetch(), at_once())
            .await
            .unwrap();
        first.await.unwrap().unwrap();
        let calls = recorder.0.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0 - start, Duration::from_millis(20));
        assert_eq!(calls[1].0 - start, Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_nobody_asked_for_fails_every_lookup_of_the_batch() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        // What `describe_instances` makes of an answer that lists `I-0001` for `i-0001` (a
        // confused server): none of the batch, found or not, may read as absent.
        let confused = || -> Fetch<Vec<Instance>> {
            Box::new(|_ids: Vec<String>| {
                async {
                    Err(EcsError::new(
                        "DescribeInstances",
                        ErrorKind::InvalidBody,
                        "DescribeInstances listed instance \"I-0001\" that was not asked for",
                    ))
                }
                .boxed()
            })
        };
        let tasks: Vec<_> = ["i-0001", "i-0002", "i-0003"]
            .map(|id| {
                let (b, f) = (batcher.clone(), confused());
                tokio::spawn(async move { b.join("k", id, f, at_once()).await })
            })
            .into_iter()
            .collect();
        for task in tasks {
            let err = task.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidBody);
            assert!(err.message().contains("\"I-0001\""), "{err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiter_gets_the_error() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            100,
        ));
        let failing = || -> Fetch<Vec<Instance>> {
            Box::new(|_ids: Vec<String>| {
                async {
                    Err(EcsError::from_response(
                        "DescribeInstances",
                        400,
                        br#"{"Code":"Throttling.User","RequestId":"R1"}"#,
                    ))
                }
                .boxed()
            })
        };
        let tasks: Vec<_> = (0..3)
            .map(|n| {
                let (b, f) = (batcher.clone(), failing());
                tokio::spawn(async move { b.join("k", &format!("i-{n}"), f, at_once()).await })
            })
            .collect();
        for task in tasks {
            let err = task.await.unwrap().unwrap_err();
            assert_eq!(err.code(), Some("Throttling.User"));
            assert_eq!(err.request_id(), Some("R1"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_does_not_cancel_the_batch() {
        let batcher = Arc::new(Batcher::<&'static str, Vec<Instance>>::new(
            "DescribeInstances",
            Duration::from_millis(20),
            Duration::ZERO,
            2,
        ));
        let recorder = Recorder::default();
        let cancelled = {
            let (b, r) = (batcher.clone(), recorder.clone());
            tokio::spawn(async move { b.join("k", "i-0002", r.fetch(), at_once()).await })
        };
        tokio::task::yield_now().await;
        cancelled.abort();
        // The second ID fills the batch (max 2), which runs at once.
        let answer = batcher
            .join("k", "i-0004", recorder.fetch(), at_once())
            .await;
        assert!(answer.unwrap().is_some());
        assert_eq!(
            recorder.batches(),
            vec![vec!["i-0002".to_string(), "i-0004".to_string()]]
        );
    }
}
