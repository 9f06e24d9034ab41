//! The controller binary: flags, logging, clients, the operational endpoints, optional leader
//! election, and one reconcile loop per watched namespace (or one for all).

use std::{process::ExitCode, sync::Arc};

use clap::Parser;
use ecs_client::{ChainOptions, ClientConfig, EcsClient, RateLimitConfig, default_chain};
use ecs_instance_controller::{
    cli::{Args, LogFormat},
    metrics::Metrics,
    pacing::Timings,
    reconciler::{self, Context, CredentialsPolicy},
    server::{self, Readiness, WatchHealth},
};
use futures::future::join_all;
use kube::{Client, Config, config::KubeConfigOptions};
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    // kube-runtime's per-reconcile span repeats what ours says (the resource) and is kept for
    // every object waiting for its turn: off below warnings unless RUST_LOG asks for it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn"));
    // Colour only for a person at a terminal, never into files, pipes or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let metrics = Arc::new(Metrics::default());
    let ecs = EcsClient::new(ClientConfig {
        endpoint_override: args.ecs_endpoint.clone(),
        allow_plain_http: args.allow_insecure_endpoint,
        signing: args.signing_method,
        rate_limit: RateLimitConfig {
            qps: args.ecs_qps,
            burst: args.ecs_burst,
            quota_file: args.quota_file.clone(),
            ..Default::default()
        },
        observer: Some(metrics.clone()),
        attempt_deadline: args.ecs_call_deadline,
        // A batch holding a lookup for every pass that may run at once (`--concurrency`) will
        // hardly grow any more: it goes at once rather than after the spacing below (at a
        // start, all passes look at once).
        batch_max_ids: usize::from(args.ecs_describe_batch_max.min(args.concurrency())),
        // Lookups that arrive one by one (passes started as release turns come) share a call;
        // half the transition poll keeps the delay inside one poll.
        batch_spacing: (args.transition_poll / 2).min(std::time::Duration::from_millis(1500)),
        max_body_bytes: args.ecs_max_body_bytes,
        ..Default::default()
    })
    .map_err(|e| format!("ECS client: {e}{}", insecure_hint(&args, &e.to_string())))?;
    let chain = ChainOptions {
        sts_endpoint: args.sts_endpoint.clone(),
        ecs_metadata_endpoint: args.ecs_metadata_endpoint.clone(),
        allow_plain_http: args.allow_insecure_endpoint,
        role_session_name: Some("ecs-instance-controller".to_string()),
        ..Default::default()
    };
    // The official libraries' default chain, chosen once from what is configured (no network
    // call at start-up); the provider renews temporary credentials before they expire.
    let default_credentials = default_chain(&chain).map_err(|e| {
        format!(
            "controller credentials: {e}{}",
            insecure_hint(&args, &e.to_string())
        )
    })?;
    if args.allow_insecure_endpoint {
        let plain = plain_http_endpoints(&args);
        let endpoints = if plain.is_empty() {
            "none configured".to_string()
        } else {
            plain.join(", ")
        };
        warn!(
            %endpoints,
            "--allow-insecure-endpoint: plain HTTP to non-loopback endpoints is allowed; signed \
             requests and their answers (temporary credentials included) cross the network in \
             clear text. For test setups only (e.g. the ecs-sim simulator behind a Service)"
        );
        metrics.set_insecure_endpoint(true);
    }
    // After the ECS configuration, whose errors need no cluster to be reported.
    let client = kube_client(&args).await?;
    match &default_credentials {
        Some(provider) => info!(
            source = %provider.source().label(),
            renews = provider.renews(),
            "controller credentials"
        ),
        None => warn!(
            "no controller credentials configured (environment, RRSA, profile file, instance role or credentials URI): only resources with spec.credentialsRef can be released"
        ),
    }
    let timings = Timings {
        steady: args.resync_period,
        recheck: args.resync_period,
        transition: args.transition_poll,
        release_timeout: args.release_timeout,
        release_resend: args.release_resend_after,
        // Longer than an owner tag can land after its observation (design.md §3).
        ownership_settle: Timings::default().ownership_settle.max(
            ecs_client::TAG_SEND_WITHIN
                + args.ecs_call_deadline
                + std::time::Duration::from_secs(10),
        ),
        ..Default::default()
    };

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let readiness = Readiness::default();
    let watch_health = WatchHealth::default();
    server::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        readiness.clone(),
        watch_health.clone(),
        args.watch_unhealthy_after,
        shutdown.clone(),
    )
    .await
    .map_err(|e| {
        format!(
            "bind metrics {} / health {}: {e}",
            args.metrics_addr, args.health_addr
        )
    })?;

    let ctx = Arc::new(
        Context::new(client.clone(), ecs, default_credentials, timings, metrics)
            .with_policy(CredentialsPolicy {
                require_credentials_ref: args.require_credentials_ref,
                own_credentials_namespaces: args.own_credentials_namespaces(),
                assume_role_namespaces: args.assume_role_namespaces(),
                chain,
            })
            .with_watch_health(watch_health)
            .with_deletion_policies(
                args.default_deletion_policy,
                args.namespace_deletion_policies,
            ),
    );
    if args.leader_election {
        readiness.set_ready();
        lead_then_run(&args, client, ctx, shutdown).await
    } else {
        readiness.set_ready();
        ctx.shell.metrics.set_leading(true);
        run_controllers(&args, ctx, shutdown).await;
        Ok(())
    }
}

/// The configured ECS, STS and metadata endpoints that use plain HTTP, as `http://host[:port]`
/// (never a path, a query or user information).
fn plain_http_endpoints(args: &Args) -> Vec<String> {
    [
        &args.ecs_endpoint,
        &args.sts_endpoint,
        &args.ecs_metadata_endpoint,
    ]
    .into_iter()
    .flatten()
    .filter_map(|raw| {
        let raw = raw.trim();
        let rest = raw
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &raw[7..])?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        Some(format!("http://{host}"))
    })
    .collect()
}

/// What to add to a start-up error that refuses plain HTTP: the flag that allows it.
fn insecure_hint(args: &Args, error: &str) -> &'static str {
    if !args.allow_insecure_endpoint
        && error.contains("plain HTTP")
        && !plain_http_endpoints(args).is_empty()
    {
        " (to allow plain HTTP to a test endpoint, such as the ecs-sim simulator behind a \
         Service, set --allow-insecure-endpoint or ALLOW_INSECURE_ENDPOINT=true)"
    } else {
        ""
    }
}

async fn kube_client(args: &Args) -> Result<Client, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| format!("Kubernetes configuration: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted; shutting down"),
        _ = terminate.recv() => info!("terminated; shutting down"),
    }
    shutdown.cancel();
}

async fn run_controllers(args: &Args, ctx: Arc<Context>, shutdown: CancellationToken) {
    let namespaces = args.watched_namespaces();
    info!(
        ?namespaces,
        concurrency = args.concurrency(),
        "controller running"
    );
    join_all(namespaces.into_iter().map(|namespace| {
        reconciler::run(
            ctx.clone(),
            namespace,
            args.concurrency(),
            shutdown.clone().cancelled_owned(),
        )
    }))
    .await;
    info!("controller stopped");
}

/// Waits for the Lease, runs while holding it, and exits with an error when it is lost, so the
/// process restarts as a follower rather than reconciling next to the new leader.
async fn lead_then_run(
    args: &Args,
    client: Client,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let duration = args.leader_election_lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &args.leader_election_lease)
        .with_namespace(&args.leader_election_namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut leading, lease_task) = manager.watch().await;
    info!(%identity, lease = %args.leader_election_lease, "waiting for the Lease");
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => changed.map_err(|_| "leader election stopped".to_string())?,
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    info!(%identity, "holding the Lease; reconciling");
    ctx.shell.metrics.set_leading(true);
    let controllers = shutdown.child_token();
    let ctx_metrics = ctx.shell.metrics.clone();
    let lost = async {
        while leading.changed().await.is_ok() {
            if !*leading.borrow_and_update() {
                break;
            }
        }
    };
    let result = tokio::select! {
        _ = run_controllers(args, ctx, controllers.clone()) => Ok(()),
        _ = lost => {
            ctx_metrics.set_leading(false);
            controllers.cancel();
            Err("lost the Lease; exiting so that only the new leader reconciles".to_string())
        }
    };
    drop(leading);
    let _ = lease_task.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(
            std::iter::once("ecs-instance-controller").chain(flags.iter().copied()),
        )
        .expect("flags parse")
    }

    #[test]
    fn plain_http_endpoints_are_shown_without_path_query_or_user() {
        let a = args(&[
            "--ecs-endpoint=http://ecs-sim.ecs-system.svc:9100",
            "--sts-endpoint=HTTP://user:pw@10.0.0.9:9100/x?token=t",
            "--ecs-metadata-endpoint=https://metadata.example",
        ]);
        assert_eq!(
            plain_http_endpoints(&a),
            ["http://ecs-sim.ecs-system.svc:9100", "http://10.0.0.9:9100"]
        );
        assert!(plain_http_endpoints(&args(&[])).is_empty());
    }

    #[test]
    fn a_refusal_names_the_flag_only_when_it_is_off() {
        let error = "endpoint `http://10.0.0.9:9100`: plain HTTP is only allowed on loopback";
        let off = args(&["--ecs-endpoint=http://10.0.0.9:9100"]);
        assert!(insecure_hint(&off, error).contains("--allow-insecure-endpoint"));
        assert_eq!(insecure_hint(&off, "some other error"), "");
        let on = args(&[
            "--ecs-endpoint=http://10.0.0.9:9100",
            "--allow-insecure-endpoint",
        ]);
        assert_eq!(insecure_hint(&on, error), "");
    }
}
