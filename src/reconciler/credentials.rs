//! Which credentials a resource's calls use: its Secret (same namespace only: keys, a role to
//! assume with them, or a role to assume with the controller's identity where the operator
//! allows it), else the controller's own, as the credentials policy allows. Each source is a
//! shared [`CredentialsProvider`] that renews temporary credentials before they expire; parsed
//! Secrets are cached by watch epoch, role sessions per role and identity (design.md §3).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Mutex,
};

use ecs_client::{
    AssumeRoleSpec, ChainOptions, Credentials, CredentialsProvider, ProviderError, SourceKind,
    assume_role,
};
use kube::ResourceExt;

use super::seams::{Cluster, SecretRead};
use crate::decision::{CredentialsSource, Identity};
use crate::resource::EcsInstance;

/// Secret data keys naming a role to assume (besides the keys of `ecs_client::credentials`).
pub const SECRET_KEY_ROLE_ARN: &str = "roleArn";
pub const SECRET_KEY_EXTERNAL_ID: &str = "externalId";
pub const SECRET_KEY_SESSION_NAME: &str = "sessionName";
pub const SECRET_KEY_DURATION_SECONDS: &str = "durationSeconds";

/// A set of namespaces, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    All,
    Only(HashSet<String>),
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::Only(HashSet::new())
    }
}

impl Namespaces {
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Only(set) => set.contains(namespace),
        }
    }
}

/// Who may use the controller's own credentials (design.md §3, shared clusters).
#[derive(Debug, Clone, Default)]
pub struct CredentialsPolicy {
    /// Every resource must name its own Secret (`--require-credentials-ref`).
    pub require_credentials_ref: bool,
    /// Only these namespaces may use the controller's own credentials (`None`: all).
    pub own_credentials_namespaces: Option<HashSet<String>>,
    /// Namespaces whose Secrets may assume a role with the controller's own identity
    /// (`--assume-role-namespaces`; none by default).
    pub assume_role_namespaces: Namespaces,
    /// STS and metadata endpoints for the roles Secrets name.
    pub chain: ChainOptions,
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
    /// The snapshot every call of the pass is signed with.
    pub credentials: Credentials,
    /// Where they come from, to renew them once if ECS says they expired.
    pub provider: CredentialsProvider,
    /// Who they are, for the evidence rule.
    pub identity: Identity,
    /// `namespace/name` of a Secret that lacks the in-use finalizer and can still get it.
    pub protect: Option<(String, String)>,
}

impl Resolved {
    /// The provider's current snapshot.
    async fn from(
        provider: CredentialsProvider,
        protect: Option<(String, String)>,
        whose: &str,
    ) -> Result<Self, Unavailable> {
        let credentials = provider
            .credentials()
            .await
            .map_err(|error| unavailable_from(whose, &error))?;
        Ok(Resolved {
            identity: identity(&provider, &credentials),
            credentials,
            provider,
            protect,
        })
    }
}

fn unavailable_from(whose: &str, error: &ProviderError) -> Unavailable {
    Unavailable(format!("{whose}: {error}"))
}

/// Who credentials of `provider` are: a role session by its role, long-term keys by their
/// AccessKeyId (design.md §2). Temporary credentials whose role is not known by its ARN (the
/// instance role, a credentials URI) are named by their source, which stays the same from one
/// renewal to the next while their AccessKeyId does not.
pub fn identity(provider: &CredentialsProvider, credentials: &Credentials) -> Identity {
    let source = provider.source();
    let role_arn = provider.role_arn().map(str::to_string).or_else(|| {
        provider
            .renews()
            .then(|| match (source.kind, &source.ecs_role_name) {
                (SourceKind::EcsRamRole, Some(name)) => format!("ecs-instance-role/{name}"),
                (SourceKind::EcsRamRole, None) => "ecs-instance-role".to_string(),
                _ => source.label(),
            })
    });
    Identity {
        access_key_id: credentials.access_key_id().to_string(),
        role_arn,
    }
}

/// Parsed credentials Secrets, so a pass does not GET its Secret every time (1,000 deleting
/// resources polled every 3 s would be hundreds of GETs a second). Each change the Secrets
/// watch reports bumps the Secret's epoch; an entry counts only for the epoch it was read in, and
/// a read that raced with a change is not kept. Secret data lives only here, never logged.
/// Role sessions are kept per role and identity, so Secrets naming the same role with the same
/// keys share one session, and a Secret edited back and forth does not assume the role again.
#[derive(Default)]
pub struct SecretCache {
    secrets: Mutex<HashMap<(String, String), SecretEntry>>,
    sessions: Mutex<HashMap<SessionKey, CredentialsProvider>>,
}

#[derive(Default)]
struct SecretEntry {
    epoch: u64,
    read: Option<(u64, CredentialsProvider)>,
}

/// A role session: the role and its options, and the identity that assumes it (the Secret's
/// keys, or `None` for the controller's own identity).
#[derive(PartialEq, Eq, Hash)]
struct SessionKey {
    role_arn: String,
    external_id: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<u32>,
    with: Option<Credentials>,
}

impl SecretCache {
    pub fn changed(&self, namespace: &str, name: &str) {
        let mut cache = self.secrets.lock().expect("secret cache lock");
        let entry = cache
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        entry.epoch += 1;
        entry.read = None;
    }

    /// The cached provider, or the epoch a fresh read starts in.
    fn get(&self, namespace: &str, name: &str) -> Result<CredentialsProvider, u64> {
        let cache = self.secrets.lock().expect("secret cache lock");
        match cache.get(&(namespace.to_string(), name.to_string())) {
            Some(SecretEntry {
                epoch,
                read: Some((read_in, provider)),
            }) if read_in == epoch => Ok(provider.clone()),
            Some(entry) => Err(entry.epoch),
            None => Err(0),
        }
    }

    fn put(&self, namespace: &str, name: &str, read_in: u64, provider: &CredentialsProvider) {
        let mut cache = self.secrets.lock().expect("secret cache lock");
        let entry = cache
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        if entry.epoch == read_in {
            entry.read = Some((read_in, provider.clone()));
        }
    }

    /// The session of `role` assumed with `base` (`with`: the base's keys, `None` for the
    /// controller's identity), started once.
    fn session(
        &self,
        role: AssumeRoleSpec,
        with: Option<Credentials>,
        base: CredentialsProvider,
        options: &ChainOptions,
    ) -> Result<CredentialsProvider, ProviderError> {
        let key = SessionKey {
            role_arn: role.role_arn.clone(),
            external_id: role.external_id.clone(),
            session_name: role.session_name.clone(),
            duration_seconds: role.duration_seconds,
            with,
        };
        let mut sessions = self.sessions.lock().expect("session cache lock");
        if let Some(provider) = sessions.get(&key) {
            return Ok(provider.clone());
        }
        let provider = assume_role(base, role, options)?;
        sessions.insert(key, provider.clone());
        Ok(provider)
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
    own: Option<&CredentialsProvider>,
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
        let Some(own) = own else {
            return Err(unavailable(
                "no spec.credentialsRef and the controller has no credentials of its own (none of the default chain's sources is configured)",
            ));
        };
        return Resolved::from(own.clone(), None, "the controller's credentials").await;
    };
    let whose = format!("Secret {namespace}/{}", reference.name);
    let epoch = match cache.get(&namespace, &reference.name) {
        Ok(provider) => return Resolved::from(provider, None, &whose).await,
        Err(epoch) => epoch,
    };
    let read: SecretRead = match cluster.read_secret(&namespace, &reference.name).await {
        Ok(Some(read)) => read,
        Ok(None) => return Err(unavailable("the Secret does not exist")),
        Err(error) => return Err(Unavailable(format!("the Secret cannot be read: {error}"))),
    };
    let provider = secret_provider(&read, &namespace, cache, policy, own)?;
    cache.put(&namespace, &reference.name, epoch, &provider);
    let protect = (!read.protected && !read.deleting).then(|| (namespace, reference.name.clone()));
    Resolved::from(provider, protect, &whose).await
}

/// What a Secret's data says: keys; keys and a role to assume with them; or only a role, to
/// assume with the controller's identity where `--assume-role-namespaces` allows it.
fn secret_provider(
    read: &SecretRead,
    namespace: &str,
    cache: &SecretCache,
    policy: &CredentialsPolicy,
    own: Option<&CredentialsProvider>,
) -> Result<CredentialsProvider, Unavailable> {
    let text = |key: &'static str| -> Result<Option<String>, Unavailable> {
        read.data
            .get(key)
            .map(|bytes| {
                std::str::from_utf8(bytes)
                    .map(|value| value.trim().to_string())
                    .map_err(|_| Unavailable(format!("`{key}` is not valid UTF-8")))
            })
            .transpose()
            .map(|value| value.filter(|v| !v.is_empty()))
    };
    let has_keys = [
        ecs_client::credentials::SECRET_KEY_ACCESS_KEY_ID,
        ecs_client::credentials::SECRET_KEY_ACCESS_KEY_SECRET,
    ]
    .iter()
    .any(|key| read.data.contains_key(*key));
    let Some(role_arn) = text(SECRET_KEY_ROLE_ARN)? else {
        let keys = Credentials::from_secret_data(&read.data)
            .map_err(|error| Unavailable(error.to_string()))?;
        return Ok(CredentialsProvider::fixed(keys));
    };
    let duration_seconds = text(SECRET_KEY_DURATION_SECONDS)?
        .map(|value| {
            value.parse::<u32>().map_err(|_| {
                Unavailable(format!(
                    "`{SECRET_KEY_DURATION_SECONDS}` must be a number of seconds (900 to 43200)"
                ))
            })
        })
        .transpose()?;
    let role = AssumeRoleSpec {
        role_arn: role_arn.clone(),
        external_id: text(SECRET_KEY_EXTERNAL_ID)?,
        session_name: text(SECRET_KEY_SESSION_NAME)?,
        duration_seconds,
        policy: None,
    };
    let refused = |error: ProviderError| Unavailable(format!("role {role_arn}: {error}"));
    if has_keys {
        let keys = Credentials::from_secret_data(&read.data)
            .map_err(|error| Unavailable(error.to_string()))?;
        let base = CredentialsProvider::fixed(keys.clone());
        return cache
            .session(role, Some(keys), base, &policy.chain)
            .map_err(refused);
    }
    if !policy.assume_role_namespaces.allows(namespace) {
        return Err(Unavailable(format!(
            "the Secret names role {role_arn} without keys to assume it with, and namespace {namespace} may not assume roles with the controller's identity (--assume-role-namespaces); add accessKeyId/accessKeySecret to the Secret, or ask the operator"
        )));
    }
    let Some(own) = own else {
        return Err(Unavailable(format!(
            "the Secret names role {role_arn} without keys, and the controller has no credentials of its own to assume it with"
        )));
    };
    cache
        .session(role, None, own.clone(), &policy.chain)
        .map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_credentials_last_until_their_secret_changes() {
        let cache = SecretCache::default();
        let credentials = CredentialsProvider::fixed(Credentials::new("AK", "secret", None));
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
