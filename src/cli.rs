//! The controller's command line: every flag also reads an environment variable, so the same
//! binary runs from a shell, a Deployment or the local run.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{reconciler::Namespaces, resource::DeletionPolicy};
use clap::{Parser, ValueEnum};
use ecs_client::SigningMethod;

#[derive(Debug, Parser)]
#[command(
    name = "ecs-instance-controller",
    version,
    about = "Releases Alibaba Cloud ECS instances when their EcsInstance resources are deleted",
    long_about = "Watches EcsInstance resources (ecs.alicloud.dev/v1alpha1). When one is deleted, waits until its \
                  ECS instance is Stopped (or stops it), calls DeleteInstance, records the outcome and every ECS \
                  error code in status conditions, and only then removes the finalizer.\n\n\
                  Controller-wide credentials come from the Alibaba Cloud default credentials chain: \
                  ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN), RRSA \
                  (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), the \
                  profile file (ALIBABA_CLOUD_CREDENTIALS_FILE, ~/.alibabacloud/credentials), the ECS instance \
                  RAM role (ALIBABA_CLOUD_ECS_METADATA) or ALIBABA_CLOUD_CREDENTIALS_URI; temporary credentials \
                  are renewed before they expire. A resource may name its own Secret instead \
                  (spec.credentialsRef), with keys and/or a role to assume (docs/security.md)."
)]
pub struct Args {
    /// Kubeconfig to use. Default: the in-cluster service account, else ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// ECS endpoint for every region instead of https://ecs.<region>.aliyuncs.com (plain HTTP
    /// only on loopback, e.g. the ecs-sim simulator at http://127.0.0.1:9100, unless
    /// --allow-insecure-endpoint).
    #[arg(long, env = "ECS_ENDPOINT")]
    pub ecs_endpoint: Option<String>,

    /// Allow plain HTTP to a non-loopback ECS, STS or metadata endpoint: for test setups only,
    /// such as the ecs-sim simulator behind a cluster Service. Signed requests and the answers
    /// (temporary credentials included) then cross the network in clear text. Logged as a
    /// warning at start-up and exported as the metric insecure_endpoint.
    #[arg(long, env = "ALLOW_INSECURE_ENDPOINT", default_value_t = false)]
    pub allow_insecure_endpoint: bool,

    /// Request signing: v3 (ACS3-HMAC-SHA256) or v1 (HMAC-SHA1, SignatureVersion 1.0).
    #[arg(long, env = "ECS_SIGNING_METHOD", default_value = "v3")]
    pub signing_method: SigningMethod,

    /// Steady ECS calls per second, per endpoint and action (lowered automatically on Throttling).
    #[arg(long, env = "ECS_QPS", default_value_t = 10.0)]
    pub ecs_qps: f64,

    /// A file where the ECS quota levels found at throttling answers are kept (no keys in it),
    /// so a restarted process starts below them instead of being throttled again (for example
    /// on an emptyDir volume). Unset: every start learns them anew.
    #[arg(long, env = "QUOTA_FILE")]
    pub quota_file: Option<std::path::PathBuf>,

    /// ECS calls allowed at once after a quiet period, per endpoint and action.
    #[arg(long, env = "ECS_BURST", default_value_t = 20)]
    pub ecs_burst: u32,

    /// Longest time one ECS call may take, in-client retries included (a server that drips its
    /// answer byte by byte is cut off here; connect 5 s and read 10 s timeouts still apply).
    #[arg(long, env = "ECS_CALL_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    pub ecs_call_deadline: Duration,

    /// Largest ECS answer read, in bytes (error answers are read up to 64 KiB).
    #[arg(long, env = "ECS_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub ecs_max_body_bytes: usize,

    /// Most instance IDs one batched DescribeInstances call carries (1-100). Concurrent lookups
    /// share calls up to this size; 1 turns batching off (one call per lookup).
    #[arg(
        long,
        env = "ECS_DESCRIBE_BATCH_MAX",
        default_value_t = 100,
        value_parser = clap::value_parser!(u16).range(1..=100)
    )]
    pub ecs_describe_batch_max: u16,

    /// Resources reconciled at the same time (per watched namespace). Default: derived from
    /// `--ecs-qps` (see `Args::concurrency`).
    #[arg(long = "concurrency", env = "CONCURRENCY")]
    pub concurrency_flag: Option<u16>,

    /// Namespaces to watch, comma-separated. Empty: all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// The STS endpoint for AssumeRole and AssumeRoleWithOIDC (a host name, or a URL such as the
    /// simulator's). Default: the public STS endpoint (or ALIBABA_CLOUD_STS_REGION's).
    #[arg(long, env = "ALIBABA_CLOUD_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,

    /// The ECS metadata server serving the instance RAM role's credentials (default
    /// http://100.100.100.200). Setting it also selects that source when no other is configured.
    #[arg(long, env = "ECS_METADATA_ENDPOINT")]
    pub ecs_metadata_endpoint: Option<String>,

    /// Namespaces whose credentials Secrets may name a role (roleArn) to assume with the
    /// controller's own identity, comma-separated; `*`: every namespace. Empty (the default):
    /// none — a Secret that names a role must then hold the keys that assume it, so no namespace
    /// borrows the controller's power unless the operator said so.
    #[arg(
        long,
        env = "ASSUME_ROLE_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub assume_role_namespaces: Vec<String>,

    /// The deletion policy of EcsInstances that set no spec.deletionPolicy and whose Namespace
    /// sets none (annotation ecs.alicloud.dev/deletion-policy): Delete, Orphan or Observe (a dry
    /// run: nothing is changed in the cloud).
    #[arg(long, env = "DEFAULT_DELETION_POLICY", default_value = "Delete", value_parser = parse_policy)]
    pub default_deletion_policy: DeletionPolicy,

    /// Whether a Namespace's ecs.alicloud.dev/deletion-policy annotation sets the deletion
    /// policy of its EcsInstances that set none. Needs list/watch on namespaces (cluster-wide):
    /// off with namespaced RBAC, where only the flag's default applies.
    #[arg(long, env = "NAMESPACE_DELETION_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub namespace_deletion_policies: bool,

    /// Every EcsInstance must name its own credentials Secret (spec.credentialsRef): the
    /// controller's own credentials are never used. For clusters shared by several teams.
    #[arg(long, env = "REQUIRE_CREDENTIALS_REF", default_value_t = false)]
    pub require_credentials_ref: bool,

    /// Namespaces whose EcsInstances may use the controller's own credentials, comma-separated.
    /// Empty: every namespace may. Others must set spec.credentialsRef.
    #[arg(
        long,
        env = "OWN_CREDENTIALS_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub own_credentials_namespaces: Vec<String>,

    /// /healthz fails once the EcsInstance watch has been failing for longer than this.
    #[arg(long, env = "WATCH_UNHEALTHY_AFTER", default_value = "2m", value_parser = parse_duration)]
    pub watch_unhealthy_after: Duration,

    /// Address of the Prometheus metrics endpoint (/metrics).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the health endpoints (/healthz liveness, /readyz readiness).
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Run for a Lease so that, of several replicas, only one reconciles at a time.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,

    /// Name of the Lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "ecs-instance-controller"
    )]
    pub leader_election_lease: String,

    /// How long a Lease stays held without renewal before another replica takes over.
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// Identity in the Lease (default: POD_NAME, else the host name and process ID).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Resync period of a steady resource (jittered ±20%).
    #[arg(long, env = "RESYNC_PERIOD", default_value = "5m", value_parser = parse_duration)]
    pub resync_period: Duration,

    /// An accepted release whose instance is still listed after this long is reported Stalled
    /// (`ReleaseNotConfirmed`) and re-checked slowly instead of polled.
    #[arg(long, env = "RELEASE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub release_timeout: Duration,

    /// A `DeleteInstance` whose outcome is unknown (timeout, connection lost, 5xx) is sent again
    /// only if the instance is still listed this long after it was sent: well beyond the time ECS
    /// takes to show a release. Measured from `status.release.requestedAt`, so restarts keep it.
    #[arg(long, env = "RELEASE_RESEND_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub release_resend_after: Duration,

    /// Polling period while an instance is changing state (stopping, releasing).
    #[arg(long, env = "TRANSITION_POLL", default_value = "3s", value_parser = parse_duration)]
    pub transition_poll: Duration,
}

impl Args {
    /// `--concurrency`, or enough passes to keep the quota busy: a release pass holds its turn
    /// while it waits for its calls, so about 6 × `--ecs-qps` (at least
    /// [`DEFAULT_CONCURRENCY`](crate::reconciler::DEFAULT_CONCURRENCY), at most 2,048).
    /// Measured: 64 at 50 calls/s released 10,000 resources in 1.69 × N/quota, 256 in 1.13 ×
    /// (docs/benchmarks.md).
    pub fn concurrency(&self) -> u16 {
        self.concurrency_flag.unwrap_or_else(|| {
            let derived = (self.ecs_qps * 6.0).ceil().clamp(0.0, 2048.0) as u16;
            derived.max(crate::reconciler::DEFAULT_CONCURRENCY)
        })
    }

    /// One loop per distinct namespace (`a,a` is one), or one for all namespaces.
    pub fn watched_namespaces(&self) -> Vec<Option<String>> {
        let mut namespaces: Vec<Option<String>> = Vec::new();
        for namespace in self.namespaces.iter().filter(|ns| !ns.is_empty()) {
            if !namespaces.iter().flatten().any(|seen| seen == namespace) {
                namespaces.push(Some(namespace.clone()));
            }
        }
        if namespaces.is_empty() {
            namespaces.push(None);
        }
        namespaces
    }

    /// `--assume-role-namespaces` as a rule.
    pub fn assume_role_namespaces(&self) -> Namespaces {
        let set: std::collections::HashSet<String> = self
            .assume_role_namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
            .map(str::to_string)
            .collect();
        if set.contains("*") {
            Namespaces::All
        } else {
            Namespaces::Only(set)
        }
    }

    /// `--own-credentials-namespaces` as a set (`None`: every namespace).
    pub fn own_credentials_namespaces(&self) -> Option<std::collections::HashSet<String>> {
        let set: std::collections::HashSet<String> = self
            .own_credentials_namespaces
            .iter()
            .filter(|ns| !ns.is_empty())
            .cloned()
            .collect();
        (!set.is_empty()).then_some(set)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `500ms`, `3s`, `5m`, `1h`, or plain seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {value:?} (e.g. 500ms, 3s, 5m)"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {value:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{value:?}: {e}"))
}

fn parse_policy(value: &str) -> Result<DeletionPolicy, String> {
    value.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn flags_and_defaults() {
        let args = Args::try_parse_from([
            "ecs-instance-controller",
            "--namespaces=a,b",
            "--signing-method=v1",
            "--ecs-qps=2.5",
        ])
        .unwrap();
        assert_eq!(args.namespaces, ["a", "b"]);
        assert_eq!(args.signing_method, SigningMethod::HmacSha1);
        assert_eq!(args.ecs_qps, 2.5);
        assert_eq!(args.concurrency(), 64, "qps 2.5: the floor");
        let fast = Args::try_parse_from(["ecs-instance-controller", "--ecs-qps=50"]).unwrap();
        assert_eq!(fast.concurrency(), 300, "6 passes per call per second");
        let set = Args::try_parse_from(["ecs-instance-controller", "--concurrency=8"]).unwrap();
        assert_eq!(set.concurrency(), 8);
        assert!(!args.leader_election);
        assert!(Args::try_parse_from(["ecs-instance-controller", "--signing-method=v9"]).is_err());
        assert!(!args.require_credentials_ref);
        assert!(!args.allow_insecure_endpoint, "plain HTTP is an opt-in");
        assert_eq!(args.watch_unhealthy_after, Duration::from_secs(120));
        assert_eq!(args.ecs_describe_batch_max, 100);
        for refused in ["0", "101"] {
            let flag = format!("--ecs-describe-batch-max={refused}");
            assert!(Args::try_parse_from(["ecs-instance-controller", &flag]).is_err());
        }
    }

    #[test]
    fn watched_namespaces_are_merged() {
        let args =
            Args::try_parse_from(["ecs-instance-controller", "--namespaces=a,b,a,,b"]).unwrap();
        assert_eq!(
            args.watched_namespaces(),
            [Some("a".into()), Some("b".into())]
        );
        let all = Args::try_parse_from(["ecs-instance-controller"]).unwrap();
        assert_eq!(all.watched_namespaces(), [None]);
    }
}
