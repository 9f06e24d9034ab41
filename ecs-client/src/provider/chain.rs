//! The default credentials chain, in the official libraries' order, and [`assume_role`].
//!
//! 1. `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (and `ALIBABA_CLOUD_SECURITY_TOKEN`);
//! 2. OIDC (RRSA): `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (and `ALIBABA_CLOUD_ROLE_SESSION_NAME`);
//! 3. the credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//!    `~/.alibabacloud/credentials` (or `credentials.ini`), profile `ALIBABA_CLOUD_PROFILE` or
//!    `default`;
//! 4. the ECS metadata server, when `ALIBABA_CLOUD_ECS_METADATA` is set (the role name; empty:
//!    asked from the server) or a metadata endpoint option is given, unless
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`;
//! 5. `ALIBABA_CLOUD_CREDENTIALS_URI`.
//!
//! The first source that is *configured* is the one: building the chain reads variables and
//! files only, never the network, and a half-configured source is an error rather than a
//! reason to try the next one. Where this differs from the libraries, and why, is in
//! `docs/credentials-chain.md`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::credentials::{Credentials, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET};
use crate::transport::check_region;

use super::error::ProviderError;
use super::http::{HttpClient, METADATA_HOST, Target, TargetRules, parse_target};
use super::metadata::{MetadataFetcher, is_role_name};
use super::profile::{ProfilePlan, read_profile};
use super::source::{ConfiguredBy, ProviderSource, SourceKind};
use super::sts::{OidcFetcher, RamRoleFetcher, RoleRequest, Sts};
use super::uri::UriFetcher;
use super::{AssumeRoleSpec, CredentialsProvider, Fetcher};

pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
pub const ENV_CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";

/// The libraries' STS endpoint when nothing names another.
const DEFAULT_STS_HOST: &str = "sts.aliyuncs.com";
/// The libraries' session duration.
const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// STS accepts 900 s up to the role's maximum session duration, at most 12 hours.
const DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43_200;
/// Largest credentials file read.
const MAX_PROFILE_FILE_BYTES: u64 = 1 << 20;

/// What the program decides about the chain (the controller's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOptions {
    /// The STS endpoint: a host name (HTTPS) or a URL. Default: `ALIBABA_CLOUD_STS_ENDPOINT`,
    /// else `sts.<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com` (`sts-vpc.` with
    /// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`), else `sts.aliyuncs.com`.
    pub sts_endpoint: Option<String>,
    /// The ECS metadata server (default `http://100.100.100.200`). Setting it also makes the
    /// metadata source eligible without `ALIBABA_CLOUD_ECS_METADATA`.
    pub ecs_metadata_endpoint: Option<String>,
    /// Plain HTTP to any host. Without it plain HTTP goes only to loopback and to the metadata
    /// server's own address.
    pub allow_plain_http: bool,
    /// `RoleSessionName` when the configuration names none (default `ecs-client-<unix s>`).
    pub role_session_name: Option<String>,
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// One whole exchange with STS, the metadata server or the URI; default 10 s.
    pub request_timeout: Duration,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            sts_endpoint: None,
            ecs_metadata_endpoint: None,
            allow_plain_http: false,
            role_session_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The default chain over the process environment and `$HOME`. `Ok(None)`: no source is
/// configured (the controller then serves only resources that name their own Secret).
pub fn default_chain(options: &ChainOptions) -> Result<Option<CredentialsProvider>, ProviderError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    default_chain_from(options, |name| std::env::var_os(name), home.as_deref())
}

/// [`default_chain`] over any variable lookup and home directory (tests, embedding).
pub fn default_chain_from(
    options: &ChainOptions,
    env: impl Fn(&str) -> Option<OsString>,
    home: Option<&Path>,
) -> Result<Option<CredentialsProvider>, ProviderError> {
    let env = Env(&env);
    if let Some(provider) = from_env_keys(&env)? {
        return Ok(Some(provider));
    }
    if let Some(provider) = from_env_oidc(options, &env)? {
        return Ok(Some(provider));
    }
    if let Some(provider) = from_profile_file(options, &env, home)? {
        return Ok(Some(provider));
    }
    if let Some(provider) = from_env_metadata(options, &env)? {
        return Ok(Some(provider));
    }
    if let Some(uri) = env.value(ENV_CREDENTIALS_URI)? {
        return credentials_uri(&uri, options).map(Some);
    }
    Ok(None)
}

/// A provider that assumes `role` with `base`'s current credentials (`AssumeRole`, signed
/// HMAC-SHA1), renewed like any temporary credentials. The STS endpoint is
/// [`ChainOptions::sts_endpoint`], else the environment's, else the default.
pub fn assume_role(
    base: CredentialsProvider,
    role: AssumeRoleSpec,
    options: &ChainOptions,
) -> Result<CredentialsProvider, ProviderError> {
    let env = |name: &str| std::env::var_os(name);
    let env = Env(&env);
    let origin = format!("assume role {}", role.role_arn);
    if let Some(external_id) = &role.external_id
        && !is_external_id(external_id)
    {
        return Err(ProviderError::config(
            &origin,
            "the external ID must be 2 to 1224 of A-Z a-z 0-9 = , . @ : / _ -",
        ));
    }
    let request = role_request(
        RoleParts {
            role_arn: role.role_arn,
            session_name: role.session_name,
            duration_seconds: role.duration_seconds,
            policy: role.policy,
            external_id: role.external_id,
        },
        &origin,
        options,
    )?;
    ram_role(base, request, ConfiguredBy::Caller, options, &env)
}

/// Variable lookups: a value that is not UTF-8 is an error naming the variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<OsString>);

impl Env<'_> {
    /// Set, even to an empty value.
    fn raw(&self, name: &'static str) -> Result<Option<String>, ProviderError> {
        (self.0)(name)
            .map(|v| {
                v.into_string().map_err(|_| {
                    ProviderError::config("environment", format!("`{name}` is not valid UTF-8"))
                })
            })
            .transpose()
    }

    /// Set to something other than whitespace (trimmed).
    fn value(&self, name: &'static str) -> Result<Option<String>, ProviderError> {
        Ok(self
            .raw(name)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// `true` (any case), as the libraries read their switches.
    fn flag(&self, name: &'static str) -> Result<bool, ProviderError> {
        Ok(self
            .value(name)?
            .is_some_and(|v| v.eq_ignore_ascii_case("true")))
    }
}

fn from_env_keys(env: &Env<'_>) -> Result<Option<CredentialsProvider>, ProviderError> {
    if env.value(ENV_ACCESS_KEY_ID)?.is_none() && env.value(ENV_ACCESS_KEY_SECRET)?.is_none() {
        return Ok(None);
    }
    // Either one set: both must be right (a half-set key is a mistake, not another source).
    let creds = Credentials::from_lookup(|name| (env.0)(name)).map_err(|e| {
        ProviderError::config(
            "environment",
            e.to_string().trim_start_matches("credentials: "),
        )
    })?;
    Ok(Some(static_provider(creds, ConfiguredBy::Environment)))
}

fn static_provider(creds: Credentials, configured_by: ConfiguredBy) -> CredentialsProvider {
    let kind = if creds.security_token().is_some() {
        SourceKind::Sts
    } else {
        SourceKind::AccessKey
    };
    let mut source = ProviderSource::new(kind, configured_by);
    source.access_key_id = Some(creds.access_key_id().to_owned());
    CredentialsProvider::fixed_with_source(creds, source)
}

fn from_env_oidc(
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<Option<CredentialsProvider>, ProviderError> {
    let role_arn = env.value(ENV_ROLE_ARN)?;
    let provider_arn = env.value(ENV_OIDC_PROVIDER_ARN)?;
    let token_file = env.value(ENV_OIDC_TOKEN_FILE)?;
    match (role_arn, provider_arn, token_file) {
        (Some(role_arn), Some(oidc_provider_arn), Some(token_file)) => {
            let session_name = env.value(ENV_ROLE_SESSION_NAME)?;
            oidc(
                OidcParts {
                    role: RoleParts {
                        role_arn,
                        session_name,
                        duration_seconds: None,
                        policy: None,
                        external_id: None,
                    },
                    oidc_provider_arn,
                    token_file: PathBuf::from(token_file),
                },
                ConfiguredBy::Environment,
                options,
                env,
            )
            .map(Some)
        }
        // `ALIBABA_CLOUD_ROLE_ARN` alone is not OIDC (the libraries ignore it too).
        (_, None, None) => Ok(None),
        (role_arn, provider_arn, token_file) => {
            let missing: Vec<&str> = [
                (role_arn.is_none(), ENV_ROLE_ARN),
                (provider_arn.is_none(), ENV_OIDC_PROVIDER_ARN),
                (token_file.is_none(), ENV_OIDC_TOKEN_FILE),
            ]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect();
            Err(ProviderError::config(
                "environment",
                format!(
                    "OIDC (RRSA) is half configured: `{}` not set",
                    missing.join("`, `")
                ),
            ))
        }
    }
}

fn from_profile_file(
    options: &ChainOptions,
    env: &Env<'_>,
    home: Option<&Path>,
) -> Result<Option<CredentialsProvider>, ProviderError> {
    let file = match env.raw(ENV_CREDENTIALS_FILE)? {
        Some(path) if path.trim().is_empty() => {
            return Err(ProviderError::config(
                "environment",
                format!("`{ENV_CREDENTIALS_FILE}` is set but empty"),
            ));
        }
        Some(path) => PathBuf::from(path.trim()),
        None => {
            // The Go and Java libraries read `credentials`, the Python library
            // `credentials.ini`: whichever exists, in that order.
            let found = home.and_then(|home| {
                ["credentials", "credentials.ini"]
                    .into_iter()
                    .map(|name| home.join(".alibabacloud").join(name))
                    .find(|p| p.is_file())
            });
            match found {
                Some(path) => path,
                None => return Ok(None),
            }
        }
    };
    let profile = env
        .value(ENV_PROFILE)?
        .unwrap_or_else(|| "default".to_owned());
    let configured_by = ConfiguredBy::Profile {
        file: file.clone(),
        profile: profile.clone(),
    };
    let origin = format!("profile `{profile}` in {}", file.display());
    let text = read_small_file(&file).map_err(|m| ProviderError::config(&origin, m))?;
    let plan = read_profile(&text, &profile).map_err(|m| ProviderError::config(&origin, m))?;
    let provider = match plan {
        ProfilePlan::Static(creds) => static_provider(creds, configured_by),
        ProfilePlan::RamRoleArn {
            base,
            role_arn,
            session_name,
            policy,
            duration_seconds,
        } => {
            let base = static_provider(base, configured_by.clone());
            let request = role_request(
                RoleParts {
                    role_arn,
                    session_name,
                    duration_seconds,
                    policy,
                    external_id: None,
                },
                &origin,
                options,
            )?;
            ram_role(base, request, configured_by, options, env)?
        }
        ProfilePlan::EcsRamRole { role_name } => {
            if env.flag(ENV_ECS_METADATA_DISABLED)? {
                return Err(ProviderError::config(
                    &origin,
                    format!("`type = ecs_ram_role` but `{ENV_ECS_METADATA_DISABLED}=true`"),
                ));
            }
            metadata(role_name, "`role_name`", configured_by, options, env)?
        }
        ProfilePlan::OidcRoleArn {
            role_arn,
            oidc_provider_arn,
            token_file,
            session_name,
            policy,
            duration_seconds,
        } => oidc(
            OidcParts {
                role: RoleParts {
                    role_arn,
                    session_name,
                    duration_seconds,
                    policy,
                    external_id: None,
                },
                oidc_provider_arn,
                token_file,
            },
            configured_by,
            options,
            env,
        )?,
    };
    Ok(Some(provider))
}

fn read_small_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("the file cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a file".to_owned());
    }
    if meta.len() > MAX_PROFILE_FILE_BYTES {
        return Err(format!(
            "the file is larger than {} KiB",
            MAX_PROFILE_FILE_BYTES / 1024
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("the file cannot be read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_owned())
}

fn from_env_metadata(
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<Option<CredentialsProvider>, ProviderError> {
    let role = env.raw(ENV_ECS_METADATA)?;
    if role.is_none() && options.ecs_metadata_endpoint.is_none() {
        return Ok(None);
    }
    if env.flag(ENV_ECS_METADATA_DISABLED)? {
        if options.ecs_metadata_endpoint.is_some() {
            return Err(ProviderError::config(
                "options",
                format!("an ECS metadata endpoint is given but `{ENV_ECS_METADATA_DISABLED}=true`"),
            ));
        }
        // The libraries leave the metadata source out when it is disabled.
        return Ok(None);
    }
    let role = role.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    metadata(
        role,
        "`ALIBABA_CLOUD_ECS_METADATA`",
        ConfiguredBy::Environment,
        options,
        env,
    )
    .map(Some)
}

/// The parts of a role request as configured, before checks and defaults.
struct RoleParts {
    role_arn: String,
    session_name: Option<String>,
    duration_seconds: Option<u32>,
    policy: Option<String>,
    external_id: Option<String>,
}

fn role_request(
    parts: RoleParts,
    origin: &str,
    options: &ChainOptions,
) -> Result<RoleRequest, ProviderError> {
    if !is_role_arn(&parts.role_arn) {
        return Err(ProviderError::config(
            origin,
            "the role ARN is not of the form acs:ram::<account digits>:role/<role name>",
        ));
    }
    let duration_seconds = parts.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS);
    if !DURATION_RANGE.contains(&duration_seconds) {
        return Err(ProviderError::config(
            origin,
            format!(
                "the session duration {duration_seconds} s is outside {}..={} s",
                DURATION_RANGE.start(),
                DURATION_RANGE.end()
            ),
        ));
    }
    let session_name = match parts
        .session_name
        .or_else(|| options.role_session_name.clone())
    {
        Some(name) => name,
        None => format!("ecs-client-{}", jiff::Timestamp::now().as_second()),
    };
    if !is_session_name(&session_name) {
        return Err(ProviderError::config(
            origin,
            format!(
                "the role session name `{}` is not 2 to 64 of A-Z a-z 0-9 . @ _ -",
                crate::sanitize::clean_text(&session_name, 80)
            ),
        ));
    }
    if parts.policy.as_deref().is_some_and(|p| p.trim().is_empty()) {
        return Err(ProviderError::config(origin, "the policy is empty"));
    }
    Ok(RoleRequest {
        role_arn: parts.role_arn,
        session_name,
        duration_seconds,
        external_id: parts.external_id,
        policy: parts.policy,
    })
}

struct OidcParts {
    role: RoleParts,
    oidc_provider_arn: String,
    token_file: PathBuf,
}

fn origin_of(configured_by: &ConfiguredBy) -> String {
    match configured_by {
        ConfiguredBy::Caller => "options".to_owned(),
        ConfiguredBy::Environment => "environment".to_owned(),
        ConfiguredBy::Profile { file, profile } => {
            format!("profile `{profile}` in {}", file.display())
        }
    }
}

fn oidc(
    parts: OidcParts,
    configured_by: ConfiguredBy,
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<CredentialsProvider, ProviderError> {
    let origin = origin_of(&configured_by);
    if !is_oidc_provider_arn(&parts.oidc_provider_arn) {
        return Err(ProviderError::config(
            &origin,
            "the OIDC provider ARN is not of the form \
             acs:ram::<account digits>:oidc-provider/<name>",
        ));
    }
    let role = role_request(parts.role, &origin, options)?;
    let (target, http) = sts_client(options, env)?;
    let mut source = ProviderSource::new(SourceKind::OidcRoleArn, configured_by);
    source.role_arn = Some(role.role_arn.clone());
    source.oidc_provider_arn = Some(parts.oidc_provider_arn.clone());
    source.oidc_token_file = Some(parts.token_file.clone());
    source.role_session_name = Some(role.session_name.clone());
    source.endpoint = Some(target.shown.clone());
    Ok(CredentialsProvider::renewing(
        source,
        Fetcher::Oidc(OidcFetcher {
            sts: Sts::new(&target, http),
            oidc_provider_arn: parts.oidc_provider_arn,
            token_file: parts.token_file,
            role,
        }),
    ))
}

fn ram_role(
    base: CredentialsProvider,
    role: RoleRequest,
    configured_by: ConfiguredBy,
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<CredentialsProvider, ProviderError> {
    let (target, http) = sts_client(options, env)?;
    let mut source = ProviderSource::new(SourceKind::RamRoleArn, configured_by);
    source.role_arn = Some(role.role_arn.clone());
    source.role_session_name = Some(role.session_name.clone());
    source.endpoint = Some(target.shown.clone());
    source.base = Some(Box::new(base.source().clone()));
    Ok(CredentialsProvider::renewing(
        source,
        Fetcher::RamRole(RamRoleFetcher {
            sts: Sts::new(&target, http),
            base,
            role,
        }),
    ))
}

fn metadata(
    role_name: Option<String>,
    role_key: &str,
    configured_by: ConfiguredBy,
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<CredentialsProvider, ProviderError> {
    let origin = origin_of(&configured_by);
    if let Some(role) = &role_name
        && !is_role_name(role)
    {
        return Err(ProviderError::config(
            &origin,
            format!("{role_key} is not a RAM role name (1 to 64 of A-Z a-z 0-9 . _ -)"),
        ));
    }
    let (raw, what) = match &options.ecs_metadata_endpoint {
        Some(endpoint) => (endpoint.clone(), "the ECS metadata endpoint option"),
        None => (
            format!("http://{METADATA_HOST}"),
            "the ECS metadata endpoint",
        ),
    };
    let target = parse_target(
        &raw,
        TargetRules {
            default_scheme: "http",
            allow_plain_http: options.allow_plain_http,
            metadata_plain_ok: true,
            path_allowed: false,
        },
    )
    .map_err(|m| ProviderError::config(what, m))?;
    let http = http_client(&target, options, what)?;
    let imds_v1_disabled = env.flag(ENV_IMDSV1_DISABLED)?;
    let mut source = ProviderSource::new(SourceKind::EcsRamRole, configured_by);
    source.ecs_role_name = role_name.clone();
    source.endpoint = Some(target.shown.clone());
    Ok(CredentialsProvider::renewing(
        source,
        Fetcher::Metadata(MetadataFetcher::new(
            &target,
            http,
            role_name,
            imds_v1_disabled,
        )),
    ))
}

fn credentials_uri(
    uri: &str,
    options: &ChainOptions,
) -> Result<CredentialsProvider, ProviderError> {
    let what = "`ALIBABA_CLOUD_CREDENTIALS_URI`";
    let target = parse_target(
        uri,
        TargetRules {
            default_scheme: "http",
            allow_plain_http: options.allow_plain_http,
            metadata_plain_ok: false,
            path_allowed: true,
        },
    )
    .map_err(|m| ProviderError::config(what, m))?;
    let http = http_client(&target, options, what)?;
    let mut source = ProviderSource::new(SourceKind::CredentialsUri, ConfiguredBy::Environment);
    source.endpoint = Some(target.shown.clone());
    Ok(CredentialsProvider::renewing(
        source,
        Fetcher::Uri(UriFetcher::new(&target, http)),
    ))
}

/// The STS endpoint as the libraries choose it, with an explicit option first and the
/// variable the ACK RRSA webhook sets (`ALIBABA_CLOUD_STS_ENDPOINT`) next.
fn sts_client(
    options: &ChainOptions,
    env: &Env<'_>,
) -> Result<(Target, HttpClient), ProviderError> {
    let (raw, what) = if let Some(endpoint) = &options.sts_endpoint {
        (endpoint.clone(), "the STS endpoint option".to_owned())
    } else if let Some(endpoint) = env.value(ENV_STS_ENDPOINT)? {
        (endpoint, format!("`{ENV_STS_ENDPOINT}`"))
    } else if let Some(region) = env.value(ENV_STS_REGION)? {
        check_region(&region)
            .map_err(|m| ProviderError::config(&format!("`{ENV_STS_REGION}`"), m))?;
        let prefix = if env.flag(ENV_VPC_ENDPOINT_ENABLED)? {
            "sts-vpc"
        } else {
            "sts"
        };
        (
            format!("{prefix}.{region}.aliyuncs.com"),
            format!("`{ENV_STS_REGION}`"),
        )
    } else {
        (DEFAULT_STS_HOST.to_owned(), "the STS endpoint".to_owned())
    };
    let target = parse_target(
        &raw,
        TargetRules {
            default_scheme: "https",
            allow_plain_http: options.allow_plain_http,
            metadata_plain_ok: false,
            path_allowed: false,
        },
    )
    .map_err(|m| ProviderError::config(&what, m))?;
    let http = http_client(&target, options, &what)?;
    Ok((target, http))
}

fn http_client(
    target: &Target,
    options: &ChainOptions,
    what: &str,
) -> Result<HttpClient, ProviderError> {
    HttpClient::new(target, options.connect_timeout, options.request_timeout)
        .map_err(|m| ProviderError::config(what, m))
}

/// `acs:ram::<digits>:<kind>/<name>` with a name of `[A-Za-z0-9._-]`, at most `max` long.
fn is_ram_arn(arn: &str, kind: &str, max: usize) -> bool {
    let Some(rest) = arn.strip_prefix("acs:ram::") else {
        return false;
    };
    let Some((account, resource)) = rest.split_once(':') else {
        return false;
    };
    let Some(name) = resource
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    (1..=32).contains(&account.len())
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn is_role_arn(arn: &str) -> bool {
    is_ram_arn(arn, "role", 64)
}

fn is_oidc_provider_arn(arn: &str) -> bool {
    is_ram_arn(arn, "oidc-provider", 128)
}

fn is_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-'))
}

fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_names_are_checked() {
        for ok in [
            "acs:ram::123456789012:role/ops",
            "acs:ram::1:role/a.b_c-d",
            "acs:ram::123:role/aliyunserviceroleforecs",
        ] {
            assert!(is_role_arn(ok), "{ok}");
        }
        for bad in [
            "",
            "acs:ram::role/x",
            "acs:ram::12a:role/x",
            "acs:ram::123:role/",
            "acs:ram::123:user/x",
            "acs:ram::123:role/x/y",
            "acs:ram::123:role/x y",
            "arn:aws:iam::123:role/x",
            &format!("acs:ram::1:role/{}", "x".repeat(65)),
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        assert!(is_oidc_provider_arn(
            "acs:ram::123:oidc-provider/ack-rrsa-c1"
        ));
        assert!(!is_oidc_provider_arn("acs:ram::123:role/ack-rrsa-c1"));
        assert!(is_session_name("ecs-instance-controller@cluster.1"));
        assert!(!is_session_name("x"));
        assert!(!is_session_name("has space"));
        assert!(is_external_id("abc=,.@:/_-123"));
        assert!(!is_external_id("a"));
        assert!(!is_external_id("has space"));
    }
}
