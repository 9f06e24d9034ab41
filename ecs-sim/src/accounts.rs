//! The accounts the simulator accepts: AccessKeyId/secret pairs with an optional STS token, each
//! a RAM user of a numeric Alibaba Cloud account ID (for ARNs, GetCallerIdentity and visibility,
//! docs/ecs-reference.md §10).

use std::fmt;

use serde::Deserialize;

/// The documented default test account, used when no account is configured.
pub const DEFAULT_ACCESS_KEY_ID: &str = "testid";
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "testsecret";
/// The account of every key configured without an `accountId`.
pub const DEFAULT_ACCOUNT_ID: &str = "1000000000000000";

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, every request of this account must carry exactly this token.
    #[serde(default)]
    pub security_token: Option<String>,
    /// The numeric account ID this key belongs to (default [`DEFAULT_ACCOUNT_ID`]).
    #[serde(default)]
    pub account_id: Option<String>,
    /// The RAM user name in ARNs (`acs:ram::<account>:user/<name>`); default: the AccessKeyId.
    #[serde(default)]
    pub user_name: Option<String>,
}

/// Secrets and tokens never reach logs or error output.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("account_id", &self.account_id)
            .field("user_name", &self.user_name)
            .finish()
    }
}

impl Account {
    pub fn default_test_account() -> Self {
        Account {
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
            access_key_secret: DEFAULT_ACCESS_KEY_SECRET.to_owned(),
            security_token: None,
            account_id: None,
            user_name: None,
        }
    }

    pub fn account_id(&self) -> &str {
        self.account_id.as_deref().unwrap_or(DEFAULT_ACCOUNT_ID)
    }

    pub fn user_name(&self) -> &str {
        self.user_name.as_deref().unwrap_or(&self.access_key_id)
    }

    /// Parses the `--account AK:SECRET[:STS_TOKEN]` form (the token may itself contain `:`).
    pub fn parse_flag(value: &str) -> Result<Self, String> {
        let mut parts = value.splitn(3, ':');
        let access_key_id = parts.next().unwrap_or_default();
        let secret = parts.next().unwrap_or_default();
        if access_key_id.is_empty() || secret.is_empty() {
            return Err("expected AK:SECRET[:STS_TOKEN] with a non-empty AK and SECRET".to_owned());
        }
        Ok(Account {
            access_key_id: access_key_id.to_owned(),
            access_key_secret: secret.to_owned(),
            security_token: parts.next().filter(|t| !t.is_empty()).map(str::to_owned),
            account_id: None,
            user_name: None,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.access_key_id.is_empty() || self.access_key_secret.is_empty() {
            return Err("accessKeyId and accessKeySecret must not be empty".to_owned());
        }
        if let Some(id) = &self.account_id
            && !is_account_id(id)
        {
            return Err(format!(
                "accountId {id:?} of {} is not a numeric account ID",
                self.access_key_id
            ));
        }
        if self
            .user_name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.contains(['/', ':']))
        {
            return Err(format!("userName of {} is not valid", self.access_key_id));
        }
        Ok(())
    }
}

/// An Alibaba Cloud account ID: digits only (16 in practice; 1..20 accepted).
pub fn is_account_id(id: &str) -> bool {
    (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flag_forms() {
        let a = Account::parse_flag("ak:sk").unwrap();
        assert_eq!(
            (a.access_key_id.as_str(), a.access_key_secret.as_str()),
            ("ak", "sk")
        );
        assert_eq!(a.security_token, None);
        let a = Account::parse_flag("ak:sk:tok:en").unwrap();
        assert_eq!(a.security_token.as_deref(), Some("tok:en"));
        assert!(Account::parse_flag("ak").is_err());
        assert!(Account::parse_flag(":sk").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let a = Account::parse_flag("ak:supersecret:token123").unwrap();
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("supersecret") && !shown.contains("token123"),
            "{shown}"
        );
    }
}
