//! The quota levels the rate limiter found at throttling answers, kept in a file so that a
//! restarted process (a crash, a container restart in the same Pod) starts below them instead
//! of probing past them again: without it every restart cost a throttled call per quota it had
//! learnt. Only levels younger than [`KEPT_FOR`] are used (quotas change: Quota Center, other
//! tools' load), and the file names no key: each scope is a SHA-256 of endpoint, region,
//! AccessKeyId and action.
//!
//! Written by hand: a small JSON map read once and rewritten (to a temporary file, then
//! renamed) on the rare throttling answer; failures are logged once and change nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A saved level older than this is not used.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Level {
    /// Calls per second the quota let through.
    qps: f64,
    /// When, in seconds since the Unix epoch.
    at: u64,
}

pub(crate) struct QuotaMemory {
    path: PathBuf,
    levels: Mutex<HashMap<String, Level>>,
    warned: AtomicBool,
}

/// The file's name for a scope and action.
pub(crate) fn scope_key(endpoint: &str, region: &str, access_key_id: &str, action: &str) -> String {
    let digest = Sha256::digest(format!("{endpoint}\n{region}\n{access_key_id}\n{action}"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl QuotaMemory {
    /// Reads `path` (missing or unreadable: nothing remembered).
    pub(crate) fn open(path: PathBuf) -> Self {
        let memory = QuotaMemory {
            path,
            levels: Mutex::new(HashMap::new()),
            warned: AtomicBool::new(false),
        };
        match std::fs::read(&memory.path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(levels) => *memory.levels.lock().expect("quota memory lock") = levels,
                Err(error) => memory.warn(&format!("not a quota file ({error}); starting afresh")),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => memory.warn(&error.to_string()),
        }
        memory
    }

    /// The level last found for `key`, if it is recent.
    pub(crate) fn level(&self, key: &str) -> Option<f64> {
        let levels = self.levels.lock().expect("quota memory lock");
        let level = levels.get(key)?;
        (now_secs().saturating_sub(level.at) < KEPT_FOR.as_secs()).then_some(level.qps)
    }

    /// Records (`Some`) or forgets (`None`) the level of `key`, and rewrites the file.
    pub(crate) fn set(&self, key: String, qps: Option<f64>) {
        let text = {
            let mut levels = self.levels.lock().expect("quota memory lock");
            let changed = match qps {
                Some(qps) => levels
                    .insert(
                        key,
                        Level {
                            qps,
                            at: now_secs(),
                        },
                    )
                    .is_none_or(|l| l.qps != qps),
                None => levels.remove(&key).is_some(),
            };
            if !changed {
                return;
            }
            serde_json::to_vec(&*levels).expect("levels serialize")
        };
        let temporary = self.path.with_extension("tmp");
        let written =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &self.path));
        if let Err(error) = written {
            self.warn(&error.to_string());
        }
    }

    fn warn(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(file = %self.path.display(), error = what,
                "the quota file cannot be used; every restart learns the quotas again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_survive_a_restart_and_name_no_key() {
        let dir = std::env::temp_dir().join(format!("quota-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("quotas.json");
        let _ = std::fs::remove_file(&path);
        let key = scope_key(
            "https://ecs.cn-hangzhou.aliyuncs.com",
            "cn-hangzhou",
            "LTAIexample",
            "DeleteInstance",
        );
        let first = QuotaMemory::open(path.clone());
        assert_eq!(first.level(&key), None);
        first.set(key.clone(), Some(6.0));
        let restarted = QuotaMemory::open(path.clone());
        assert_eq!(restarted.level(&key), Some(6.0));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("LTAIexample"), "{text}");
        restarted.set(key.clone(), None);
        assert_eq!(QuotaMemory::open(path.clone()).level(&key), None);
        // A file that is not ours: nothing remembered, nothing fails.
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(QuotaMemory::open(path).level(&key), None);
    }
}
