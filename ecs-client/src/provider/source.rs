//! [`ProviderSource`]: where a provider's credentials come from, with its non-secret details,
//! for the start-up log, error messages and the controller's evidence record.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How the credentials are obtained. The names are the official credentials libraries' type
/// names (`docs/credentials-chain.md`), except `static` (credentials handed over by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Given by the caller ([`CredentialsProvider::fixed`](super::CredentialsProvider::fixed)).
    Static,
    /// A long-lived access key (environment or profile `type = access_key`).
    AccessKey,
    /// An access key with a security token that cannot be renewed (environment or profile
    /// `type = sts`).
    Sts,
    /// `AssumeRole` with other credentials (profile `type = ram_role_arn`, or
    /// [`assume_role`](super::assume_role)).
    RamRoleArn,
    /// `AssumeRoleWithOIDC` with a projected service account token (RRSA).
    OidcRoleArn,
    /// The ECS instance metadata server (the instance's RAM role).
    EcsRamRole,
    /// A URL that answers credentials (`ALIBABA_CLOUD_CREDENTIALS_URI`).
    CredentialsUri,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Static => "static",
            SourceKind::AccessKey => "access_key",
            SourceKind::Sts => "sts",
            SourceKind::RamRoleArn => "ram_role_arn",
            SourceKind::OidcRoleArn => "oidc_role_arn",
            SourceKind::EcsRamRole => "ecs_ram_role",
            SourceKind::CredentialsUri => "credentials_uri",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the source was configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum ConfiguredBy {
    /// The program itself (a fixed key, a role assumed per resource).
    Caller,
    /// `ALIBABA_CLOUD_*` environment variables (or a chain option).
    Environment,
    /// A profile of the credentials file.
    #[serde(rename_all = "camelCase")]
    Profile { file: PathBuf, profile: String },
}

/// Which source a provider uses and its non-secret details: no secret, no token, no OIDC token
/// and no query string of a credentials URI is ever in it. `Display` gives one line, e.g.
/// `oidc_role_arn acs:ram::123:role/x (environment)`; `Serialize` gives the fields (camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProviderSource {
    pub kind: SourceKind,
    pub configured_by: ConfiguredBy,
    /// The access key ID of a static source (not secret; ECS shows it in its own logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The role assumed (`ram_role_arn`, `oidc_role_arn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// The OIDC token file, read again at every renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,
    /// The instance's RAM role name (`ecs_ram_role`); `None` when it is asked from the
    /// metadata server at every renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_role_name: Option<String>,
    /// The STS endpoint, the metadata server or the credentials URI (scheme, host, port and
    /// path; never a query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The credentials a role is assumed with (`ram_role_arn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Box<ProviderSource>>,
}

impl ProviderSource {
    pub(crate) fn new(kind: SourceKind, configured_by: ConfiguredBy) -> Self {
        Self {
            kind,
            configured_by,
            access_key_id: None,
            role_arn: None,
            oidc_provider_arn: None,
            oidc_token_file: None,
            role_session_name: None,
            ecs_role_name: None,
            endpoint: None,
            base: None,
        }
    }

    /// The kind and its main detail, e.g. `oidc_role_arn acs:ram::123:role/x`.
    pub fn label(&self) -> String {
        let detail = match self.kind {
            SourceKind::Static | SourceKind::AccessKey | SourceKind::Sts => self
                .access_key_id
                .as_deref()
                .map(|id| format!("access key {id}")),
            SourceKind::RamRoleArn | SourceKind::OidcRoleArn => self.role_arn.clone(),
            SourceKind::EcsRamRole => Some(match &self.ecs_role_name {
                Some(name) => format!("role {name}"),
                None => "role named by the metadata server".to_owned(),
            }),
            SourceKind::CredentialsUri => self.endpoint.clone(),
        };
        match detail {
            Some(detail) => format!("{} {detail}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

impl fmt::Display for ProviderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())?;
        match &self.configured_by {
            ConfiguredBy::Caller => {}
            ConfiguredBy::Environment => f.write_str(" (environment)")?,
            ConfiguredBy::Profile { file, profile } => {
                write!(f, " (profile `{profile}` in {})", file.display())?
            }
        }
        if let Some(base) = &self.base {
            write!(f, " with {base}")?;
        }
        Ok(())
    }
}
