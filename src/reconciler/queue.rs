//! The work queue of one controller loop (design.md §8): every resource is in it at most once,
//! with the time its next pass is due; a resource asked for while its pass waits for a turn is
//! not queued twice, and one asked for while its pass runs gets another pass after it.
//!
//! In place of kube-runtime's `Controller`, whose scheduler kept, per resource, a timer entry and
//! a map entry holding the whole object reference, and at a start (when all are due at once) an
//! entry in a set that never shrinks: about a kilobyte per resource, a fifth of the controller's
//! memory with 10,000 resources. Here a resource is one shared `namespace/name` string and two
//! index entries.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use tokio::{sync::Notify, time::Instant};

/// A resource in the queue: `namespace/name`, one allocation shared by the indexes.
pub type Key = Arc<str>;

pub fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}").into()
}

/// The namespace and name of `key`.
pub fn parts(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    due_changed: Notify,
}

#[derive(Default)]
struct State {
    /// When each queued resource is due, and its place among those due at the same time.
    due: HashMap<Key, (Instant, u64)>,
    order: BTreeSet<(Instant, u64, Key)>,
    /// Resources taken from the queue: their pass waits for a turn or runs.
    taken: HashMap<Key, Taken>,
    next_place: u64,
}

#[derive(Clone, Copy, Default)]
struct Taken {
    /// The pass has started (it reads the resource from the cache from then on).
    started: bool,
    /// Asked for again after the pass started: due again at this time once it ends.
    again: Option<Instant>,
}

impl State {
    /// Queues `key` at `at`, or keeps it where it is if it is due sooner.
    fn queue(&mut self, key: Key, at: Instant) {
        if let Some(&(queued, place)) = self.due.get(&key) {
            if queued <= at {
                return;
            }
            self.order.remove(&(queued, place, key.clone()));
        }
        let place = self.next_place;
        self.next_place += 1;
        self.order.insert((at, place, key.clone()));
        self.due.insert(key, (at, place));
    }
}

impl WorkQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a pass of `key` at `at`.
    pub fn schedule(&self, key: Key, at: Instant) {
        let mut state = self.state();
        if let Some(taken) = state.taken.get_mut(&key) {
            // A pass that has not started will read the newest object anyway.
            if taken.started {
                taken.again = Some(taken.again.map_or(at, |again| again.min(at)));
            }
            return;
        }
        state.queue(key, at);
        drop(state);
        self.due_changed.notify_one();
    }

    /// Drops `key` from the queue (its resource is gone). A pass already taken ends as it
    /// would: it finds the resource gone from the cache.
    pub fn forget(&self, key: &str) {
        let mut state = self.state();
        if let Some((at, place)) = state.due.remove(key) {
            state.order.remove(&(at, place, Key::from(key)));
        }
        if let Some(taken) = state.taken.get_mut(key) {
            taken.again = None;
        }
    }

    /// The next resource due, once one is: taken from the queue until [`Self::finished`].
    /// Cancel-safe: a key is taken only when this returns.
    pub async fn next(&self) -> Key {
        loop {
            let changed = self.due_changed.notified();
            let first_due = {
                let mut state = self.state();
                match state.order.first() {
                    Some((at, ..)) if *at <= Instant::now() => {
                        let (_, _, key) = state.order.pop_first().expect("a first entry");
                        state.due.remove(&key);
                        state.taken.insert(key.clone(), Taken::default());
                        return key;
                    }
                    first => first.map(|(at, ..)| *at),
                }
            };
            match first_due {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The pass of `key` starts: from now on a change asks for another pass after it.
    pub fn started(&self, key: &str) {
        if let Some(taken) = self.state().taken.get_mut(key) {
            taken.started = true;
        }
    }

    /// The pass of `key` ended and asked to be looked at again at `then`, if at all.
    pub fn finished(&self, key: Key, then: Option<Instant>) {
        let mut state = self.state();
        let again = state.taken.remove(&key).and_then(|taken| taken.again);
        let at = match (then, again) {
            (Some(then), Some(again)) => Some(then.min(again)),
            (then, again) => then.or(again),
        };
        if let Some(at) = at {
            state.queue(key, at);
            drop(state);
            self.due_changed.notify_one();
        }
    }

    /// Resources queued or taken (for tests and the log).
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let state = self.state();
        (state.due.len(), state.taken.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn due_first_then_first_asked_and_once_each() {
        let queue = WorkQueue::default();
        let now = Instant::now();
        queue.schedule(key("ns", "late"), now + Duration::from_secs(5));
        queue.schedule(key("ns", "b"), now);
        queue.schedule(key("ns", "a"), now);
        queue.schedule(key("ns", "b"), now);
        // Asked for sooner: moves up; asked for later: stays.
        queue.schedule(key("ns", "late"), now + Duration::from_secs(1));
        queue.schedule(key("ns", "late"), now + Duration::from_secs(9));
        assert_eq!(queue.len(), (3, 0));
        assert_eq!(&*queue.next().await, "ns/b");
        assert_eq!(&*queue.next().await, "ns/a");
        assert_eq!(&*queue.next().await, "ns/late");
        assert_eq!(Instant::now() - now, Duration::from_secs(1));
        assert_eq!(queue.len(), (0, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_pass_gives_one_more_pass_after_it() {
        let queue = WorkQueue::default();
        let now = Instant::now();
        let a = key("ns", "a");
        queue.schedule(a.clone(), now);
        let taken = queue.next().await;
        // Waiting for its turn: the pass will read the newest object, nothing more to do.
        queue.schedule(a.clone(), now);
        queue.started(&taken);
        queue.schedule(a.clone(), now);
        queue.schedule(a.clone(), now);
        assert_eq!(queue.len(), (0, 1), "never queued while taken");
        // It asked for a resync in a minute; the change asks for now.
        queue.finished(taken, Some(now + Duration::from_secs(60)));
        assert_eq!(&*queue.next().await, "ns/a");
        assert_eq!(Instant::now(), now, "due at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_that_awaits_a_change_leaves_nothing_queued() {
        let queue = WorkQueue::default();
        let a = key("ns", "a");
        queue.schedule(a.clone(), Instant::now());
        let taken = queue.next().await;
        queue.started(&taken);
        queue.finished(taken, None);
        assert_eq!(queue.len(), (0, 0));
        let waiting = tokio::time::timeout(Duration::from_secs(3600), queue.next()).await;
        assert!(waiting.is_err(), "nothing is due");
        // A change wakes a waiting `next`.
        let queue = Arc::new(queue);
        let woken = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.schedule(a, Instant::now());
        assert_eq!(&*woken.await.unwrap(), "ns/a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_resource_is_not_passed_again() {
        let queue = WorkQueue::default();
        let now = Instant::now();
        queue.schedule(key("ns", "gone"), now);
        queue.schedule(key("ns", "kept"), now + Duration::from_secs(1));
        queue.forget("ns/gone");
        assert_eq!(&*queue.next().await, "ns/kept");
        assert_eq!(parts("ns/kept"), ("ns", "kept"));
    }
}
