//! The credentials file (`~/.alibabacloud/credentials`, INI): one section per profile, its
//! `type` and the official libraries' key names (`enable = false` disables a profile). Errors
//! name the profile and the key, never a value.
//!
//! | `type` | keys (optional in brackets) |
//! |---|---|
//! | `access_key` | `access_key_id`, `access_key_secret` |
//! | `sts` | `access_key_id`, `access_key_secret`, `security_token` |
//! | `ram_role_arn` | `access_key_id`, `access_key_secret`, `role_arn`, [`role_session_name`], [`policy`], [`role_session_expiration`] |
//! | `ecs_ram_role` | [`role_name`] |
//! | `oidc_role_arn` | `role_arn`, `oidc_provider_arn`, `oidc_token_file_path`, [`role_session_name`], [`policy`], [`role_session_expiration`] |

use std::path::PathBuf;

use ini::{Ini, ParseOption, Properties};

use crate::credentials::Credentials;
use crate::sanitize::clean_text;

/// What a profile says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProfilePlan {
    /// `access_key` or `sts` (`sts` when the token is there).
    Static(Credentials),
    RamRoleArn {
        base: Credentials,
        role_arn: String,
        session_name: Option<String>,
        policy: Option<String>,
        duration_seconds: Option<u32>,
    },
    EcsRamRole {
        role_name: Option<String>,
    },
    OidcRoleArn {
        role_arn: String,
        oidc_provider_arn: String,
        token_file: PathBuf,
        session_name: Option<String>,
        policy: Option<String>,
        duration_seconds: Option<u32>,
    },
}

pub(crate) const SUPPORTED_TYPES: &str =
    "access_key, sts, ram_role_arn, ecs_ram_role, oidc_role_arn";

/// The plan of `profile` in the INI `text`. The error is the message only (the caller names
/// the file and the profile: `profile `x` in <file>: `role_arn` is missing`).
pub(crate) fn read_profile(text: &str, profile: &str) -> Result<ProfilePlan, String> {
    // Quotes are removed as the Go library's INI parser does; backslashes are kept (no escape
    // processing: a value is taken as written). Inline comments after ` #` / ` ;` are dropped,
    // as both libraries do.
    let ini = Ini::load_from_str_opt(
        text,
        ParseOption {
            enabled_quote: true,
            enabled_escape: false,
            ..ParseOption::default()
        },
    )
    .map_err(|e| {
        format!(
            "the file is not valid INI (line {}, column {})",
            e.line, e.col
        )
    })?;
    let Some(section) = ini.section(Some(profile)) else {
        let mut names: Vec<String> = ini
            .sections()
            .flatten()
            .take(20)
            .map(|s| format!("`{}`", clean_text(s, 64)))
            .collect();
        names.dedup();
        let known = if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("it has {}", names.join(", "))
        };
        return Err(format!("the file has no such profile ({known})"));
    };
    let keys = Keys(section);
    // The Java library reads only sections with `enable = true`; the Go and Python libraries
    // ignore the key. A profile that says it is disabled is not used.
    if keys
        .optional("enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return Err("the profile is disabled (`enable = false`)".to_owned());
    }
    let kind = keys.required("type")?;
    let plan = match kind.as_str() {
        "access_key" => ProfilePlan::Static(keys.credentials(false)?),
        "sts" => ProfilePlan::Static(keys.credentials(true)?),
        "ram_role_arn" => ProfilePlan::RamRoleArn {
            base: keys.credentials(false)?,
            role_arn: keys.required("role_arn")?,
            session_name: keys.optional("role_session_name"),
            policy: keys.optional("policy"),
            duration_seconds: keys.seconds("role_session_expiration")?,
        },
        "ecs_ram_role" => ProfilePlan::EcsRamRole {
            role_name: keys.optional("role_name"),
        },
        "oidc_role_arn" => ProfilePlan::OidcRoleArn {
            role_arn: keys.required("role_arn")?,
            oidc_provider_arn: keys.required("oidc_provider_arn")?,
            token_file: PathBuf::from(keys.required("oidc_token_file_path")?),
            session_name: keys.optional("role_session_name"),
            policy: keys.optional("policy"),
            duration_seconds: keys.seconds("role_session_expiration")?,
        },
        other => {
            return Err(format!(
                "has `type` \"{}\", which is not supported here (supported: {SUPPORTED_TYPES})",
                clean_text(other, 64)
            ));
        }
    };
    Ok(plan)
}

struct Keys<'a>(&'a Properties);

impl Keys<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    fn required(&self, key: &'static str) -> Result<String, String> {
        match self.0.get(key).map(str::trim) {
            None => Err(format!("`{key}` is missing")),
            Some("") => Err(format!("`{key}` is empty")),
            Some(v) => Ok(v.to_owned()),
        }
    }

    fn seconds(&self, key: &'static str) -> Result<Option<u32>, String> {
        self.optional(key)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| format!("`{key}` is not a number of seconds"))
            })
            .transpose()
    }

    fn credentials(&self, with_token: bool) -> Result<Credentials, String> {
        let id = self.required("access_key_id")?;
        let secret = self.required("access_key_secret")?;
        let token = if with_token {
            Some(self.required("security_token")?)
        } else {
            None
        };
        Credentials::from_parts(
            ["access_key_id", "access_key_secret", "security_token"],
            id,
            secret,
            token,
        )
        .map_err(|e| e.to_string().trim_start_matches("credentials: ").to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# comments are fine
[default]
enable = true
type = access_key
access_key_id = LTAIdefault
access_key_secret = SECRET-default  # an inline comment

[sts]
type = sts
access_key_id = STS.id
access_key_secret = SECRET-sts
security_token = "TOKEN-sts"

[ram]
type = ram_role_arn
access_key_id = LTAIram
access_key_secret = SECRET-ram
role_arn = acs:ram::123456:role/ops
role_session_name = my-session
policy = {"Version":"1"}
role_session_expiration = 1800

[ecs]
type = ecs_ram_role
role_name = EcsRole

[ecs-discover]
type = ecs_ram_role

[oidc]
type = oidc_role_arn
role_arn = acs:ram::123456:role/rrsa
oidc_provider_arn = acs:ram::123456:oidc-provider/ack-rrsa
oidc_token_file_path = /var/run/secrets/tokens/token

[rsa]
type = rsa_key_pair
public_key_id = x
private_key_file = /x

[notype]
access_key_id = x
access_key_secret = SECRET-notype

[nosecret]
type = access_key
access_key_id = LTAIx

[emptysecret]
type = access_key
access_key_id = LTAIx
access_key_secret =

[noroleArn]
type = ram_role_arn
access_key_id = LTAIram
access_key_secret = SECRET-noroleArn

[badduration]
type = oidc_role_arn
role_arn = acs:ram::1:role/x
oidc_provider_arn = acs:ram::1:oidc-provider/x
oidc_token_file_path = /t
role_session_expiration = an hour

[disabled]
enable = false
type = access_key
access_key_id = LTAIx
access_key_secret = SECRET-disabled

[badid]
type = sts
access_key_id = has space
access_key_secret = SECRET-badid
security_token = TOKEN-badid
"#;

    #[test]
    fn every_mode_is_read() {
        assert_eq!(
            read_profile(FILE, "default"),
            Ok(ProfilePlan::Static(Credentials::new(
                "LTAIdefault",
                "SECRET-default",
                None
            )))
        );
        assert_eq!(
            read_profile(FILE, "sts"),
            Ok(ProfilePlan::Static(Credentials::new(
                "STS.id",
                "SECRET-sts",
                Some("TOKEN-sts".into())
            )))
        );
        assert_eq!(
            read_profile(FILE, "ram"),
            Ok(ProfilePlan::RamRoleArn {
                base: Credentials::new("LTAIram", "SECRET-ram", None),
                role_arn: "acs:ram::123456:role/ops".into(),
                session_name: Some("my-session".into()),
                policy: Some(r#"{"Version":"1"}"#.into()),
                duration_seconds: Some(1800),
            })
        );
        assert_eq!(
            read_profile(FILE, "ecs"),
            Ok(ProfilePlan::EcsRamRole {
                role_name: Some("EcsRole".into())
            })
        );
        assert_eq!(
            read_profile(FILE, "ecs-discover"),
            Ok(ProfilePlan::EcsRamRole { role_name: None })
        );
        assert_eq!(
            read_profile(FILE, "oidc"),
            Ok(ProfilePlan::OidcRoleArn {
                role_arn: "acs:ram::123456:role/rrsa".into(),
                oidc_provider_arn: "acs:ram::123456:oidc-provider/ack-rrsa".into(),
                token_file: "/var/run/secrets/tokens/token".into(),
                session_name: None,
                policy: None,
                duration_seconds: None,
            })
        );
    }

    #[test]
    fn errors_name_the_key_never_a_value() {
        for (profile, expected) in [
            (
                "rsa",
                "has `type` \"rsa_key_pair\", which is not supported here",
            ),
            ("notype", "`type` is missing"),
            ("nosecret", "`access_key_secret` is missing"),
            ("emptysecret", "`access_key_secret` is empty"),
            ("noroleArn", "`role_arn` is missing"),
            (
                "badduration",
                "`role_session_expiration` is not a number of seconds",
            ),
            (
                "badid",
                "`access_key_id` contains characters that cannot be sent",
            ),
            ("disabled", "the profile is disabled (`enable = false`)"),
            (
                "nothere",
                "the file has no such profile (it has `default`, `sts`, `ram`",
            ),
        ] {
            let err = read_profile(FILE, profile).unwrap_err();
            assert!(err.contains(expected), "{profile}: {err}");
            assert!(!err.contains("SECRET") && !err.contains("TOKEN"), "{err}");
        }
        let err = read_profile("[a\ntype=x", "a").unwrap_err();
        assert!(err.starts_with("the file is not valid INI (line"), "{err}");
    }
}
