//! The RAM side the simulator models for STS (docs/ecs-reference.md §10): RAM roles with a trust
//! list, OIDC identity providers with their issuer keys, and the instance RAM role the metadata
//! server serves. Loaded from the accounts file's object form (see the README).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::accounts::{Account, is_account_id};
use crate::oidc::KeySet;

/// RAM's MaxSessionDuration range and default (seconds).
pub const MIN_MAX_SESSION_DURATION: u64 = 3600;
pub const MAX_MAX_SESSION_DURATION: u64 = 43_200;

/// `acs:ram::<accountId>:role/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleArn {
    pub account_id: String,
    pub name: String,
}

impl RoleArn {
    /// `None` unless the value is a role ARN (RAM role names: 1..64 letters, digits, `.`, `-`,
    /// `_`).
    pub fn parse(value: &str) -> Option<RoleArn> {
        let (account_id, name) = parse_ram_arn(value, "role/")?;
        Some(RoleArn { account_id, name })
    }

    /// A stable numeric role ID (18 digits) derived from the ARN.
    pub fn role_id(&self) -> String {
        numeric_id(&self.to_string(), 18)
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acs:ram::{}:role/{}", self.account_id, self.name)
    }
}

/// `acs:ram::<accountId>:<kind><name>` → (account, name).
fn parse_ram_arn(value: &str, kind: &str) -> Option<(String, String)> {
    let rest = value.strip_prefix("acs:ram::")?;
    let (account_id, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix(kind)?;
    let valid_name = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    (is_account_id(account_id) && valid_name).then(|| (account_id.to_owned(), name.to_owned()))
}

pub fn is_oidc_provider_arn(value: &str) -> bool {
    parse_ram_arn(value, "oidc-provider/").is_some()
}

/// A stable pseudo-random numeric ID of `digits` digits (no leading zero) derived from `seed`.
pub fn numeric_id(seed: &str, digits: usize) -> String {
    let hash = Sha256::digest(seed.as_bytes());
    let mut out = String::with_capacity(digits);
    for (i, byte) in hash.iter().cycle().take(digits).enumerate() {
        let digit = byte % 10;
        out.push(char::from(
            b'0' + if i == 0 { 1 + digit % 9 } else { digit },
        ));
    }
    out
}

/// One entry of a role's OIDC trust: the provider, and optionally the only `sub`s it accepts
/// (RRSA trusts `system:serviceaccount:<namespace>:<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcTrust {
    pub provider_arn: String,
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleConfig {
    arn: String,
    #[serde(default)]
    trusted_account_ids: Vec<String>,
    #[serde(default)]
    trusted_access_key_ids: Vec<String>,
    #[serde(default)]
    trusted_oidc_providers: Vec<OidcTrust>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    max_session_duration: Option<u64>,
}

/// A RAM role and its trust policy.
#[derive(Debug, Clone)]
pub struct Role {
    pub arn: RoleArn,
    /// RAM identities (users and assumed roles) of these accounts may assume the role.
    pub trusted_account_ids: BTreeSet<String>,
    /// These AccessKeyIds may assume the role (whatever their account).
    pub trusted_access_key_ids: BTreeSet<String>,
    pub trusted_oidc_providers: Vec<OidcTrust>,
    /// When set, AssumeRole must pass exactly this `ExternalId`.
    pub external_id: Option<String>,
    pub max_session_duration: u64,
}

impl Role {
    /// Whether the trust policy lets `provider_arn` tokens with subject `sub` assume the role.
    pub fn trusts_oidc(&self, provider_arn: &str, sub: Option<&str>) -> bool {
        self.trusted_oidc_providers.iter().any(|trust| {
            trust.provider_arn == provider_arn
                && trust
                    .subjects
                    .as_ref()
                    .is_none_or(|subjects| sub.is_some_and(|s| subjects.iter().any(|x| x == s)))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderConfig {
    arn: String,
    issuer_url: String,
    client_ids: Vec<String>,
    #[serde(default)]
    public_key_files: Vec<String>,
    #[serde(default)]
    jwks_file: Option<String>,
    #[serde(default)]
    jwks: Option<serde_json::Value>,
}

/// An OIDC identity provider registered in RAM.
#[derive(Debug)]
pub struct OidcProvider {
    pub arn: String,
    pub issuer_url: String,
    pub client_ids: BTreeSet<String>,
    pub keys: KeySet,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetadataConfig {
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    require_token: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectForm {
    #[serde(default)]
    accounts: Vec<Account>,
    #[serde(default)]
    roles: Vec<RoleConfig>,
    #[serde(default)]
    oidc_providers: Vec<ProviderConfig>,
    #[serde(default)]
    metadata: Option<MetadataConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileForm {
    Accounts(Vec<Account>),
    Object(ObjectForm),
}

/// Roles, OIDC providers and the metadata role (accounts live in the state's key table).
#[derive(Debug, Default)]
pub struct Iam {
    pub roles: BTreeMap<String, Role>,
    pub providers: BTreeMap<String, OidcProvider>,
    /// The instance RAM role the metadata server serves.
    pub metadata_role: Option<RoleArn>,
    /// The metadata server answers only requests that carry a session token (hardened mode).
    pub metadata_requires_token: bool,
}

/// What an accounts file holds.
#[derive(Debug, Default)]
pub struct Config {
    pub accounts: Vec<Account>,
    pub iam: Iam,
}

/// Reads an accounts file: a JSON array of accounts, or an object with `accounts`, `roles`,
/// `oidcProviders` and `metadata`. Key files are resolved relative to the file's directory.
pub fn load_file(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read accounts file {}: {e}", path.display()))?;
    let form: FileForm = serde_json::from_str(&text)
        .map_err(|e| format!("accounts file {} is not valid: {e}", path.display()))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let config = match form {
        FileForm::Accounts(accounts) => Config {
            accounts,
            iam: Iam::default(),
        },
        FileForm::Object(object) => {
            build(object, base).map_err(|e| format!("accounts file {}: {e}", path.display()))?
        }
    };
    for account in &config.accounts {
        account.validate()?;
    }
    Ok(config)
}

fn build(object: ObjectForm, base: &Path) -> Result<Config, String> {
    let mut iam = Iam::default();
    for config in object.oidc_providers {
        let provider = build_provider(config, base)?;
        if iam.providers.contains_key(&provider.arn) {
            return Err(format!(
                "OIDC provider {} is configured twice",
                provider.arn
            ));
        }
        iam.providers.insert(provider.arn.clone(), provider);
    }
    for config in object.roles {
        let role = build_role(config)?;
        for trust in &role.trusted_oidc_providers {
            if !iam.providers.contains_key(&trust.provider_arn) {
                return Err(format!(
                    "role {} trusts OIDC provider {}, which is not configured",
                    role.arn, trust.provider_arn
                ));
            }
        }
        let key = role.arn.to_string();
        if iam.roles.contains_key(&key) {
            return Err(format!("role {key} is configured twice"));
        }
        iam.roles.insert(key, role);
    }
    if let Some(metadata) = object.metadata {
        if let Some(arn) = &metadata.role_arn {
            iam.metadata_role = Some(
                RoleArn::parse(arn)
                    .ok_or_else(|| format!("metadata.roleArn {arn:?} is not a role ARN"))?,
            );
        }
        iam.metadata_requires_token = metadata.require_token;
    }
    Ok(Config {
        accounts: object.accounts,
        iam,
    })
}

fn build_role(config: RoleConfig) -> Result<Role, String> {
    let arn = RoleArn::parse(&config.arn).ok_or_else(|| {
        format!(
            "role arn {:?} is not acs:ram::<accountId>:role/<name>",
            config.arn
        )
    })?;
    if let Some(bad) = config
        .trusted_account_ids
        .iter()
        .find(|a| !is_account_id(a))
    {
        return Err(format!(
            "role {arn}: trusted account ID {bad:?} is not numeric"
        ));
    }
    let max_session_duration = config
        .max_session_duration
        .unwrap_or(MIN_MAX_SESSION_DURATION);
    if !(MIN_MAX_SESSION_DURATION..=MAX_MAX_SESSION_DURATION).contains(&max_session_duration) {
        return Err(format!(
            "role {arn}: maxSessionDuration must be {MIN_MAX_SESSION_DURATION}..{MAX_MAX_SESSION_DURATION}"
        ));
    }
    if config.external_id.as_deref() == Some("") {
        return Err(format!("role {arn}: externalId must not be empty"));
    }
    Ok(Role {
        arn,
        trusted_account_ids: config.trusted_account_ids.into_iter().collect(),
        trusted_access_key_ids: config.trusted_access_key_ids.into_iter().collect(),
        trusted_oidc_providers: config.trusted_oidc_providers,
        external_id: config.external_id,
        max_session_duration,
    })
}

fn build_provider(config: ProviderConfig, base: &Path) -> Result<OidcProvider, String> {
    if !is_oidc_provider_arn(&config.arn) {
        return Err(format!(
            "OIDC provider arn {:?} is not acs:ram::<accountId>:oidc-provider/<name>",
            config.arn
        ));
    }
    if config.issuer_url.is_empty() || config.client_ids.is_empty() {
        return Err(format!(
            "OIDC provider {}: issuerUrl and clientIds are required",
            config.arn
        ));
    }
    let mut keys = KeySet::default();
    let context = |what: &str, e: String| format!("OIDC provider {} {what}: {e}", config.arn);
    for file in &config.public_key_files {
        let path = base.join(file);
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| context(&format!("key file {}", path.display()), e.to_string()))?;
        keys.add_pem(&pem)
            .map_err(|e| context(&format!("key file {}", path.display()), e))?;
    }
    if let Some(file) = &config.jwks_file {
        let path = base.join(file);
        let json = std::fs::read_to_string(&path)
            .map_err(|e| context(&format!("JWKS file {}", path.display()), e.to_string()))?;
        keys.add_jwks(&json)
            .map_err(|e| context(&format!("JWKS file {}", path.display()), e))?;
    }
    if let Some(jwks) = &config.jwks {
        keys.add_jwks(&jwks.to_string())
            .map_err(|e| context("jwks", e))?;
    }
    if keys.is_empty() {
        return Err(format!(
            "OIDC provider {} has no key: give publicKeyFiles, jwksFile or jwks",
            config.arn
        ));
    }
    Ok(OidcProvider {
        arn: config.arn,
        issuer_url: config.issuer_url,
        client_ids: config.client_ids.into_iter().collect(),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let arn = RoleArn::parse("acs:ram::1234567890123456:role/ecs-operator").unwrap();
        assert_eq!(arn.account_id, "1234567890123456");
        assert_eq!(arn.name, "ecs-operator");
        assert_eq!(
            arn.to_string(),
            "acs:ram::1234567890123456:role/ecs-operator"
        );
        for bad in [
            "",
            "acs:ram::12a:role/x",
            "acs:ram::123:role/",
            "acs:ram::123:user/x",
            "acs:ecs::123:role/x",
            "acs:ram::123:role/a/b",
            "acs:ram::123:role/a b",
        ] {
            assert_eq!(RoleArn::parse(bad), None, "{bad}");
        }
        assert!(is_oidc_provider_arn(
            "acs:ram::123:oidc-provider/ack-rrsa-c1"
        ));
        assert!(!is_oidc_provider_arn("acs:ram::123:role/x"));
    }

    #[test]
    fn numeric_ids_are_stable() {
        let a = numeric_id("x", 18);
        assert_eq!(a.len(), 18);
        assert_eq!(a, numeric_id("x", 18));
        assert_ne!(a, numeric_id("y", 18));
        assert!(!a.starts_with('0') && a.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn oidc_trust_with_and_without_subjects() {
        let role = Role {
            arn: RoleArn::parse("acs:ram::1:role/r").unwrap(),
            trusted_account_ids: BTreeSet::new(),
            trusted_access_key_ids: BTreeSet::new(),
            trusted_oidc_providers: vec![
                OidcTrust {
                    provider_arn: "p1".into(),
                    subjects: None,
                },
                OidcTrust {
                    provider_arn: "p2".into(),
                    subjects: Some(vec!["system:serviceaccount:ns:sa".into()]),
                },
            ],
            external_id: None,
            max_session_duration: 3600,
        };
        assert!(role.trusts_oidc("p1", None));
        assert!(role.trusts_oidc("p2", Some("system:serviceaccount:ns:sa")));
        assert!(!role.trusts_oidc("p2", Some("system:serviceaccount:ns:other")));
        assert!(!role.trusts_oidc("p2", None));
        assert!(!role.trusts_oidc("p3", None));
    }
}
