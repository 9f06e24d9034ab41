//! The ECS simulator (`ecs-sim`) as a child process, with helpers for its admin API.
//!
//! ```no_run
//! # async fn demo() {
//! let sim = testkit::sim::EcsSim::start().await;
//! sim.seed(serde_json::json!([{"instanceId": "i-abcdefgh1", "regionId": "cn-hangzhou"}])).await;
//! // point the client at sim.endpoint() with ACCESS_KEY_ID / ACCESS_KEY_SECRET
//! # }
//! ```
//! Every helper panics with a clear message on failure: they are for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The simulator's documented default test account.
pub const ACCESS_KEY_ID: &str = "testid";
pub const ACCESS_KEY_SECRET: &str = "testsecret";

/// The first line `ecs-sim` prints once it serves, followed by its URL.
pub const READY_PREFIX: &str = "ecs-sim listening on ";

/// A free loopback port and fast transitions (`--transition-ms 200`, `--release-linger-ms 500`).
pub const TEST_ARGS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--transition-ms",
    "200",
    "--release-linger-ms",
    "500",
];
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `$ECS_SIM_BIN`, else `ecs-sim` in the target profile directory of the running test executable.
pub fn sim_binary() -> PathBuf {
    crate::supervisor::workspace_binary("ecs-sim", "ECS_SIM_BIN")
}

/// A simulator: a child process this value owns (dropping it kills that child and nothing
/// else), or one running elsewhere that tests only talk to ([`EcsSim::attach`]).
pub struct EcsSim {
    child: Option<Child>,
    endpoint: String,
    http: reqwest::Client,
    /// Held so the child never writes into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl EcsSim {
    /// Starts on a free loopback port with fast transitions (`--transition-ms 200`,
    /// `--release-linger-ms 500`) and the default test account.
    pub async fn start() -> EcsSim {
        Self::start_with_args(&[]).await
    }

    /// Like [`EcsSim::start`], with extra arguments appended (a repeated flag overrides the default).
    pub async fn start_with_args(args: &[&str]) -> EcsSim {
        let binary = sim_binary();
        let mut child = Command::new(&binary)
            .args(TEST_ARGS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the ECS simulator {}: {e}", binary.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
        let endpoint = match read {
            Ok(Ok(n)) if n > 0 => line
                .trim()
                .strip_prefix(READY_PREFIX)
                .unwrap_or_else(|| panic!("unexpected first line from ecs-sim: {line:?}"))
                .to_owned(),
            Ok(Ok(_)) => {
                let status = child.wait().await;
                panic!(
                    "ecs-sim exited before it was ready ({status:?}); see its stderr above, args {args:?}"
                )
            }
            Ok(Err(e)) => panic!("cannot read the ready line of ecs-sim: {e}"),
            Err(_) => panic!("ecs-sim did not report ready within {START_TIMEOUT:?}"),
        };
        let http = crate::http_client();
        EcsSim {
            child: Some(child),
            endpoint,
            http,
            _stdout: Some(stdout),
        }
    }

    /// The admin API of a simulator started elsewhere (a shared one, or one in a cluster).
    pub fn attach(endpoint: &str) -> EcsSim {
        EcsSim {
            child: None,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http: crate::http_client(),
            _stdout: None,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The simulator's process ID (for resource measurements), `None` once it has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/_sim/{path}", self.endpoint);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("ecs-sim admin {method} {url} failed: {e}"));
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("ecs-sim admin {method} {url}: cannot read the body: {e}"));
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("ecs-sim admin {method} {url}: body is not JSON ({e}): {text}")
        });
        (status, value)
    }

    async fn admin_ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.admin(method.clone(), path, body).await;
        assert_eq!(
            status, 200,
            "ecs-sim admin {method} /_sim/{path} answered {status}: {value}"
        );
        value
    }

    /// Adds (or replaces) instances: a JSON array of instance specs (see ecs-sim/README.md).
    pub async fn seed(&self, instances: Value) {
        self.admin_ok(reqwest::Method::POST, "instances", Some(instances))
            .await;
    }

    /// Changes attributes of an instance; `status` is set at once.
    pub async fn patch_instance(&self, id: &str, attrs: Value) {
        self.admin_ok(
            reqwest::Method::PATCH,
            &format!("instances/{id}"),
            Some(attrs),
        )
        .await;
    }

    /// The instance as the simulator holds it (spec fields plus `released`), `None` once gone.
    pub async fn instance(&self, id: &str) -> Option<Value> {
        let (status, value) = self
            .admin(reqwest::Method::GET, &format!("instances/{id}"), None)
            .await;
        match status {
            200 => Some(value),
            404 => None,
            _ => panic!("ecs-sim admin GET /_sim/instances/{id} answered {status}: {value}"),
        }
    }

    /// The instance's tags, key → value (what TagResources/UntagResources left, or what was
    /// seeded); panics if the instance does not exist.
    pub async fn tags(&self, id: &str) -> BTreeMap<String, String> {
        let value = self
            .admin_ok(reqwest::Method::GET, &format!("instances/{id}/tags"), None)
            .await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("ecs-sim tags of {id} are not a string map ({e}): {value}"))
    }

    /// Replaces all tags of an instance, out of band (as another tool or person would); `&[]`
    /// removes them. At most 20 tags; reserved prefixes such as `acs:` are allowed here.
    pub async fn set_tags(&self, id: &str, tags: &[(&str, &str)]) {
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        self.admin_ok(
            reqwest::Method::PUT,
            &format!("instances/{id}/tags"),
            Some(Value::Object(tags)),
        )
        .await;
    }

    /// Makes the instance disappear at once (an out-of-band release).
    pub async fn remove_instance(&self, id: &str) {
        self.admin_ok(reqwest::Method::DELETE, &format!("instances/{id}"), None)
            .await;
    }

    /// The call log in order, optionally only one action's calls.
    pub async fn calls(&self, action: Option<&str>) -> Vec<Value> {
        let path = match action {
            Some(action) => format!("calls?action={action}"),
            None => "calls".to_owned(),
        };
        match self.admin_ok(reqwest::Method::GET, &path, None).await {
            Value::Array(calls) => calls,
            other => panic!("ecs-sim call log is not an array: {other}"),
        }
    }

    pub async fn clear_calls(&self) {
        self.admin_ok(reqwest::Method::DELETE, "calls", None).await;
    }

    /// Replaces all fault rules: a JSON array of rules (see ecs-sim/README.md); a whole
    /// `{"rules": [...]}` body is accepted too.
    pub async fn set_faults(&self, rules: Value) {
        let body = match rules {
            Value::Object(ref fields) if fields.contains_key("rules") => rules,
            rules => serde_json::json!({ "rules": rules }),
        };
        self.admin_ok(reqwest::Method::PUT, "faults", Some(body))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.admin_ok(reqwest::Method::DELETE, "faults", None).await;
    }

    pub async fn add_account(
        &self,
        access_key_id: &str,
        secret: &str,
        security_token: Option<&str>,
    ) {
        let mut account = serde_json::json!({
            "accessKeyId": access_key_id,
            "accessKeySecret": secret,
        });
        if let Some(token) = security_token {
            account["securityToken"] = Value::from(token);
        }
        self.admin_ok(reqwest::Method::POST, "accounts", Some(account))
            .await;
    }
}

impl Drop for EcsSim {
    fn drop(&mut self) {
        // Kills only this child; kill_on_drop is the backstop if this fails.
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}
