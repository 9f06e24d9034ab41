//! The simulator's shared state: one mutex around everything a request touches. Requests hold it
//! only for in-memory work (never across an await), which keeps one core far from saturated.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::accounts::Account;
use crate::faults::Faults;
use crate::iam::Iam;
use crate::model::Store;
use crate::regions::Regions;
use crate::sessions::Sessions;

/// Timing knobs from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Duration of each transitional status.
    pub transition: Duration,
    /// How long a released instance stays visible to DescribeInstances.
    pub release_linger: Duration,
    /// Allowed distance between a request's timestamp and the simulator's clock.
    pub max_skew: Duration,
    /// Test flag: every temporary credential lives at most this long, whatever was asked.
    pub sts_max_lifetime: Option<Duration>,
}

impl Timing {
    /// The lifetime of credentials asked for `requested`, after the test cap.
    pub fn sts_lifetime(&self, requested: Duration) -> Duration {
        self.sts_max_lifetime
            .map_or(requested, |cap| cap.min(requested))
    }
}

pub struct Sim {
    pub timing: Timing,
    inner: Mutex<State>,
}

impl Sim {
    pub fn new(timing: Timing, accounts: Vec<Account>, iam: Iam, regions: Regions) -> Self {
        let accounts = accounts
            .into_iter()
            .map(|a| (a.access_key_id.clone(), a))
            .collect();
        Sim {
            timing,
            inner: Mutex::new(State {
                store: Store::default(),
                accounts,
                nonces: Nonces::default(),
                calls: CallLog::default(),
                faults: Faults::default(),
                regions,
                iam,
                sessions: Sessions::default(),
                metadata: MetadataState::default(),
            }),
        }
    }

    /// A panic while the lock was held cannot leave the state half-updated in a way that
    /// matters to a test double, so a poisoned lock is simply taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct State {
    pub store: Store,
    pub accounts: HashMap<String, Account>,
    pub nonces: Nonces,
    pub calls: CallLog,
    pub faults: Faults,
    pub regions: Regions,
    pub iam: Iam,
    /// Temporary credentials (STS and metadata).
    pub sessions: Sessions,
    pub metadata: MetadataState,
}

/// The metadata server's runtime state.
#[derive(Debug, Default)]
pub struct MetadataState {
    /// Session tokens of the hardened mode → when they stop working.
    pub tokens: HashMap<String, Instant>,
    /// The AccessKeyId of the credentials currently served for the instance role.
    pub current: Option<String>,
}

impl MetadataState {
    pub fn token_valid(&mut self, token: &str, now: Instant) -> bool {
        self.tokens.retain(|_, until| *until > now);
        self.tokens.contains_key(token)
    }
}

impl State {
    /// The owners (`owner` values of instances) a caller sees: its own AccessKeyId and account
    /// for a static key; for temporary credentials the role's account and every configured key of
    /// that account (docs/ecs-reference.md §10; the README's "Visibility").
    pub fn owners_for_key(&self, access_key_id: &str) -> Vec<String> {
        match self.accounts.get(access_key_id) {
            Some(account) => vec![access_key_id.to_owned(), account.account_id().to_owned()],
            None => Vec::new(),
        }
    }

    pub fn owners_for_account(&self, account_id: &str) -> Vec<String> {
        let mut owners = vec![account_id.to_owned()];
        let mut keys: Vec<&String> = self
            .accounts
            .values()
            .filter(|a| a.account_id() == account_id)
            .map(|a| &a.access_key_id)
            .collect();
        keys.sort();
        owners.extend(keys.into_iter().cloned());
        owners
    }

    /// A region calls may name: built in, from `--region`, or used by a seeded instance.
    pub fn region_exists(&self, region: &str) -> bool {
        self.regions.contains(region) || self.store.seeded_regions().contains(region)
    }

    /// `POST /_sim/reset`: everything but the accounts, roles and providers (and the `--region`
    /// regions); regions known only from seeded instances are forgotten with them; temporary
    /// credentials and metadata tokens are forgotten.
    pub fn reset(&mut self) {
        self.store.clear();
        self.calls.clear();
        self.faults.clear();
        self.nonces = Nonces::default();
        self.sessions.clear();
        self.metadata = MetadataState::default();
    }
}

/// Seen `SignatureNonce`s per AccessKeyId, each remembered until its request's timestamp can no
/// longer pass the skew check (after that a replay fails on the timestamp anyway).
#[derive(Debug, Default)]
pub struct Nonces {
    seen: HashSet<(String, String)>,
    /// Insertion order with expiry; expiries are nearly monotonic, and keeping an entry a
    /// little longer than needed is harmless.
    expiry: VecDeque<(Instant, (String, String))>,
}

impl Nonces {
    pub fn contains(&mut self, access_key_id: &str, nonce: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now {
                break;
            }
            let (_, key) = self.expiry.pop_front().expect("front exists");
            self.seen.remove(&key);
        }
        self.seen
            .contains(&(access_key_id.to_owned(), nonce.to_owned()))
    }

    pub fn insert(&mut self, access_key_id: &str, nonce: &str, forget_at: Instant) {
        let key = (access_key_id.to_owned(), nonce.to_owned());
        if self.seen.insert(key.clone()) {
            self.expiry.push_back((forget_at, key));
        }
    }
}

/// One request to `/`, as `GET /_sim/calls` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    /// `ecs`, `sts` or `metadata` (the metadata server and the credentials URI).
    pub product: &'static str,
    pub action: Option<String>,
    pub access_key_id: Option<String>,
    pub signature_method: Option<&'static str>,
    pub params: BTreeMap<String, String>,
    /// `None` when the connection was dropped on purpose before processing.
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub request_id: String,
    pub at: String,
    /// The connection was closed before the call was processed.
    pub dropped: bool,
    /// The call was processed, but its answer (`http_status`, `code`) was never sent.
    pub answer_dropped: bool,
}

/// The newest calls, bounded so a long benchmark cannot exhaust memory.
#[derive(Debug, Default)]
pub struct CallLog {
    records: VecDeque<CallRecord>,
    next_seq: u64,
}

impl CallLog {
    pub const CAPACITY: usize = 100_000;

    pub fn push(&mut self, mut record: CallRecord) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        if self.records.len() == Self::CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub fn filtered(&self, action: Option<&str>) -> Vec<&CallRecord> {
        self.records
            .iter()
            .filter(|r| action.is_none_or(|a| r.action.as_deref() == Some(a)))
            .collect()
    }

    /// Sequence numbers keep counting after a clear, so a test never confuses old and new calls.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire() {
        let t0 = Instant::now();
        let mut nonces = Nonces::default();
        nonces.insert("ak", "n1", t0 + Duration::from_secs(1));
        assert!(nonces.contains("ak", "n1", t0));
        assert!(!nonces.contains("other", "n1", t0));
        assert!(!nonces.contains("ak", "n1", t0 + Duration::from_secs(1)));
    }
}
