//! Which credentials a resource's calls use: its Secret (same namespace only), else the
//! controller's own, as the credentials policy allows; parsed Secrets cached by watch epoch.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Mutex,
};

use ecs_client::Credentials;
use kube::ResourceExt;

use super::seams::{Cluster, SecretRead};
use crate::decision::{CredentialsSource, Identity};
use crate::resource::EcsInstance;

/// Who may use the controller's own credentials (design.md §3, shared clusters).
#[derive(Debug, Clone, Default)]
pub struct CredentialsPolicy {
    /// Every resource must name its own Secret (`--require-credentials-ref`).
    pub require_credentials_ref: bool,
    /// Only these namespaces may use the controller's own credentials (`None`: all).
    pub own_credentials_namespaces: Option<HashSet<String>>,
}

/// Why a resource has no usable credentials: a sentence for its condition, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The credentials of one pass, and whether their Secret still needs the in-use finalizer.
pub struct Resolved {
    pub credentials: Credentials,
    /// Who they are, for the evidence rule.
    pub identity: Identity,
    /// `namespace/name` of a Secret that lacks the in-use finalizer and can still get it.
    pub protect: Option<(String, String)>,
}

/// Parsed credentials Secrets, so a pass does not GET its Secret every time (1,000 deleting
/// resources polled every 3 s would be hundreds of GETs a second). Each change the Secrets
/// watch reports bumps the Secret's epoch; an entry counts only for the epoch it was read in, and
/// a read that raced with a change is not kept. Secret data lives only here, never logged.
#[derive(Default)]
pub struct SecretCache(Mutex<HashMap<(String, String), SecretEntry>>);

#[derive(Default)]
struct SecretEntry {
    epoch: u64,
    read: Option<(u64, Credentials)>,
}

impl SecretCache {
    pub fn changed(&self, namespace: &str, name: &str) {
        let mut cache = self.0.lock().expect("secret cache lock");
        let entry = cache
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        entry.epoch += 1;
        entry.read = None;
    }

    /// The cached credentials, or the epoch a fresh read starts in.
    fn get(&self, namespace: &str, name: &str) -> Result<Credentials, u64> {
        let cache = self.0.lock().expect("secret cache lock");
        match cache.get(&(namespace.to_string(), name.to_string())) {
            Some(SecretEntry {
                epoch,
                read: Some((read_in, credentials)),
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
            entry.read = Some((read_in, credentials.clone()));
        }
    }
}

pub fn source(resource: &EcsInstance) -> CredentialsSource {
    match &resource.spec.credentials_ref {
        Some(reference) => CredentialsSource::Secret(format!(
            "{}/{}",
            resource.namespace().unwrap_or_default(),
            reference.name
        )),
        None => CredentialsSource::Controller,
    }
}

/// The resource's Secret (same namespace only), else the controller's own credentials, as the
/// policy allows.
pub async fn resolve(
    cluster: &impl Cluster,
    cache: &SecretCache,
    policy: &CredentialsPolicy,
    own: Option<&Credentials>,
    resource: &EcsInstance,
) -> Result<Resolved, Unavailable> {
    let namespace = resource.namespace().unwrap_or_default();
    let unavailable = |why: &str| Unavailable(why.to_string());
    let Some(reference) = &resource.spec.credentials_ref else {
        if policy.require_credentials_ref {
            return Err(unavailable(
                "this controller requires spec.credentialsRef (--require-credentials-ref)",
            ));
        }
        if let Some(allowed) = &policy.own_credentials_namespaces
            && !allowed.contains(&namespace)
        {
            return Err(Unavailable(format!(
                "namespace {namespace} may not use the controller's own credentials (--own-credentials-namespaces); set spec.credentialsRef"
            )));
        }
        return own
            .cloned()
            .map(|credentials| Resolved::new(credentials, None))
            .ok_or_else(|| {
                unavailable(
                    "no spec.credentialsRef and the controller has no ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET",
                )
            });
    };
    let epoch = match cache.get(&namespace, &reference.name) {
        Ok(credentials) => {
            return Ok(Resolved::new(credentials, None));
        }
        Err(epoch) => epoch,
    };
    let read: SecretRead = match cluster.read_secret(&namespace, &reference.name).await {
        Ok(Some(read)) => read,
        Ok(None) => return Err(unavailable("the Secret does not exist")),
        Err(error) => return Err(Unavailable(format!("the Secret cannot be read: {error}"))),
    };
    let credentials = Credentials::from_secret_data(&read.data)
        .map_err(|error| Unavailable(error.to_string()))?;
    cache.put(&namespace, &reference.name, epoch, &credentials);
    let protect = (!read.protected && !read.deleting).then(|| (namespace, reference.name.clone()));
    Ok(Resolved::new(credentials, protect))
}

impl Resolved {
    fn new(credentials: Credentials, protect: Option<(String, String)>) -> Self {
        let identity = Identity {
            access_key_id: credentials.access_key_id().to_string(),
            role_arn: None,
        };
        Resolved {
            credentials,
            identity,
            protect,
        }
    }
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
}
