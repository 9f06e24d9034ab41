//! `deploy/monitoring/`: the alerting rules, their PrometheusRule twin and the Grafana dashboard.
//!
//! - The rules pass the real `promtool check rules`, and their unit tests
//!   (`deploy/monitoring/alerts_test.yaml`) pass the real `promtool test rules` — promtool built
//!   from the Go module proxy by `scripts/build-promtool.sh` (`$PROMTOOL`, set by
//!   `scripts/test.sh`). Without promtool these tests fail; they never skip.
//! - `prometheusrule.yaml` is generated from `alerts.yaml` (never edited by hand).
//! - Every alert has a unit test that fires it and one that does not, and a runbook entry in
//!   `docs/operations.md`.
//! - Every metric and label the alerts and the dashboard query exists in the `/metrics` of a real
//!   run: the controller binary against the test control plane and an `ecs-sim`, with a release, a
//!   blocked deletion and a throttled call.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::Duration,
};

use ecs_instance_controller::conditions::{READY, STALLED};
use serde_json::{Value, json};
use support::{Harness, http_get};
use testkit::sim::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, EcsSim};

const PREFIX: &str = "ecs_instance_controller_";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn monitoring(file: &str) -> PathBuf {
    workspace_root().join("deploy/monitoring").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// `$PROMTOOL`, else whatever `scripts/build-promtool.sh` prints (it builds once into the cache
/// outside the repository, then is a no-op). Panics when there is no promtool: never skips.
fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| {
        let binary = testkit::tools::built_by("PROMTOOL", "build-promtool.sh");
        assert!(
            binary.is_file(),
            "promtool is missing at {}: run scripts/build-promtool.sh and set PROMTOOL to the path \
             it prints (or unset PROMTOOL to let this test build it)",
            binary.display()
        );
        binary
    })
}

fn run_promtool(args: &[&str]) -> Output {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool().display()));
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn promtool_checks_the_rules() {
    let output = run_promtool(&["check", "rules", "deploy/monitoring/alerts.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", alerts().len())),
        "{stdout}"
    );
}

#[test]
fn promtool_runs_the_alert_unit_tests() {
    let output = run_promtool(&["test", "rules", "deploy/monitoring/alerts_test.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

/// The alerting rules of `alerts.yaml`: name → rule.
fn alerts() -> BTreeMap<String, Value> {
    let file = read_yaml(&monitoring("alerts.yaml"));
    let mut alerts = BTreeMap::new();
    for group in file["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("only alerting rules");
            assert!(
                alerts.insert(name.to_string(), rule.clone()).is_none(),
                "{name} twice"
            );
        }
    }
    alerts
}

#[test]
fn every_alert_has_unit_tests_and_a_runbook_entry() {
    let tests = read_yaml(&monitoring("alerts_test.yaml"));
    let mut fires = BTreeSet::new();
    let mut stays_quiet = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_array() {
                Some(expected) if !expected.is_empty() => fires.insert(name),
                _ => stays_quiet.insert(name),
            };
        }
    }
    let runbook = read(&workspace_root().join("docs/operations.md"));
    for (name, rule) in alerts() {
        assert!(
            fires.contains(&name),
            "no test in alerts_test.yaml fires {name}"
        );
        assert!(
            stays_quiet.contains(&name),
            "no test in alerts_test.yaml shows when {name} does not fire"
        );
        let anchor = name.to_lowercase();
        assert_eq!(
            rule["annotations"]["runbook_url"],
            format!("docs/operations.md#{anchor}"),
            "{name}"
        );
        assert!(
            runbook.contains(&format!("\n### {name}\n")),
            "docs/operations.md has no runbook entry `### {name}`"
        );
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name} has no {key}");
        }
        assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
    }
}

/// `prometheusrule.yaml`: this header, then the `groups:` of `alerts.yaml` as the `spec`, line by
/// line (comments included) indented by two spaces.
fn prometheus_rule(alerts: &str) -> String {
    let groups = alerts
        .find("\ngroups:")
        .map(|at| &alerts[at + 1..])
        .expect("alerts.yaml has `groups:` at the top level");
    let mut out = String::from(
        "# GENERATED from alerts.yaml by tests/monitoring.rs: do not edit. Edit alerts.yaml, then\n\
         #   REGENERATE_MONITORING=1 cargo test --test monitoring\n\
         # The alerting rules of alerts.yaml as a PrometheusRule for the Prometheus Operator\n\
         # (`kubectl apply -k deploy/monitoring/`; see docs/operations.md, \"Monitoring\").\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  \
           name: ecs-instance-controller\n  \
           namespace: ecs-system\n  \
           labels:\n    \
             app.kubernetes.io/name: ecs-instance-controller\n    \
             app.kubernetes.io/part-of: ecs-instance-controller\n\
         spec:\n",
    );
    for line in groups.lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_prometheus_rule_is_generated_from_the_rules_file() {
    let path = monitoring("prometheusrule.yaml");
    let expected = prometheus_rule(&read(&monitoring("alerts.yaml")));
    if std::env::var_os("REGENERATE_MONITORING").is_some() {
        std::fs::write(&path, &expected).expect("write prometheusrule.yaml");
    }
    assert!(
        std::fs::read_to_string(&path).unwrap_or_default() == expected,
        "deploy/monitoring/prometheusrule.yaml is stale or edited by hand; regenerate it from \
         alerts.yaml: REGENERATE_MONITORING=1 cargo test --test monitoring"
    );
    // And as data: the same groups, rule for rule.
    let rule = read_yaml(&path);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        read_yaml(&monitoring("alerts.yaml"))["groups"]
    );
}

/// `kubectl kustomize deploy/monitoring/` renders the Operator's objects and the dashboard.
#[test]
fn the_monitoring_kustomization_renders() {
    let kubectl = testkit::control_plane().kubectl();
    let output = Command::new(&kubectl)
        .args(["kustomize", "deploy/monitoring/"])
        .current_dir(workspace_root())
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/monitoring/: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let objects: Vec<Value> = stdout
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc).expect("a rendered object"))
        .collect();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ConfigMap", "PrometheusRule", "ServiceMonitor"])
    );
    let dashboard = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["ecs-instance-controller.json"]
        .as_str()
        .expect("the dashboard JSON");
    assert_eq!(
        serde_json::from_str::<Value>(json).expect("JSON"),
        dashboard_json()
    );
}

fn dashboard_json() -> Value {
    serde_json::from_str(&read(&monitoring("dashboard.json"))).expect("dashboard.json is JSON")
}

/// Every PromQL expression that the alerts and the dashboard evaluate, with where it is from.
fn queries() -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = alerts()
        .into_iter()
        .map(|(name, rule)| {
            let expr = rule["expr"].as_str().expect("expr").to_string();
            (format!("alert {name}"), expr)
        })
        .collect();
    fn collect(value: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(fields) => {
                let title = fields.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(Value::String(expr)) = fields.get("expr") {
                    out.push((format!("dashboard panel {title:?}"), expr.clone()));
                }
                for value in fields.values() {
                    collect(value, title, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, title, out)),
            _ => {}
        }
    }
    let dashboard = dashboard_json();
    let before = queries.len();
    collect(&dashboard["panels"], "", &mut queries);
    assert!(queries.len() > before + 10, "the dashboard has its queries");
    queries
}

/// What one PromQL expression needs from the exposition, found crudely rather than by a PromQL
/// parser: every `ecs_instance_controller_<name>` (the name runs while the characters are
/// `[a-z_]`) with the label names of the matchers in the `{...}` right after it (`label="v"`,
/// `label!="v"`, `label=~"re"`: the name before the operator; quoted values are skipped, so a
/// comma or brace inside a value does not confuse it), and the label names of every `by (...)`,
/// `without (...)`, `on (...)` and `ignoring (...)` clause. Other metrics (`up`,
/// kube-state-metrics' `kube_lease_renew_time`) come from Prometheus or other exporters and are
/// not checked. Grafana's `$__rate_interval` sits inside `[...]`, which is not looked at.
#[derive(Debug, Default)]
struct Needs {
    /// metric → label names matched on it.
    metrics: BTreeMap<String, BTreeSet<String>>,
    /// label names of grouping and matching clauses.
    grouping: BTreeSet<String>,
}

fn needs(expr: &str) -> Needs {
    let mut needs = Needs::default();
    let bytes = expr.as_bytes();
    let is_name = |b: u8| b.is_ascii_lowercase() || b == b'_';
    let is_label = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with(PREFIX) && (i == 0 || !is_label(bytes[i - 1])) {
            let start = i;
            i += PREFIX.len();
            while i < bytes.len() && is_name(bytes[i]) {
                i += 1;
            }
            let labels = needs.metrics.entry(expr[start..i].to_string()).or_default();
            if bytes.get(i) == Some(&b'{') {
                // Label matchers up to the closing brace, skipping quoted values.
                let mut name = String::new();
                let mut expecting_name = true;
                i += 1;
                while i < bytes.len() && bytes[i] != b'}' {
                    match bytes[i] {
                        b'"' => {
                            i += 1;
                            while i < bytes.len() && bytes[i] != b'"' {
                                i += if bytes[i] == b'\\' { 2 } else { 1 };
                            }
                        }
                        b',' => expecting_name = true,
                        b if expecting_name && is_label(b) => name.push(b as char),
                        b'=' | b'!' | b'~' if expecting_name => {
                            labels.insert(std::mem::take(&mut name));
                            expecting_name = false;
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            continue;
        }
        for keyword in ["by", "without", "on", "ignoring"] {
            if expr[i..].starts_with(keyword)
                && (i == 0 || !is_label(bytes[i - 1]))
                && expr[i + keyword.len()..].trim_start().starts_with('(')
            {
                let open = i + keyword.len() + expr[i + keyword.len()..].find('(').unwrap();
                let close = open + expr[open..].find(')').expect("a closing parenthesis");
                needs.grouping.extend(
                    expr[open + 1..close]
                        .split(',')
                        .map(str::trim)
                        .filter(|label| !label.is_empty())
                        .map(str::to_string),
                );
                i = close;
                break;
            }
        }
        i += 1;
    }
    needs
}

#[test]
fn the_crude_promql_reading_finds_names_and_labels() {
    let found = needs(
        r#"sum by (le, action) (rate(ecs_instance_controller_x_bucket{action="a,}b", code!~"O.*"}[5m])) / on () up{job="j"} unless ignoring(pod) ecs_instance_controller_y"#,
    );
    assert_eq!(
        found.metrics,
        BTreeMap::from([
            (
                "ecs_instance_controller_x_bucket".to_string(),
                BTreeSet::from(["action".to_string(), "code".to_string()])
            ),
            ("ecs_instance_controller_y".to_string(), BTreeSet::new()),
        ])
    );
    assert_eq!(
        found.grouping,
        BTreeSet::from(["le".to_string(), "action".to_string(), "pod".to_string()])
    );
}

/// Sample name → the label names it carries in a text exposition.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = samples.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closing brace")];
            // Label values are quoted; names are what precedes `="`.
            for part in body.split("\",") {
                if let Some((name, _)) = part.split_once("=\"") {
                    labels.insert(name.trim_start_matches(',').to_string());
                }
            }
        }
    }
    samples
}

/// Labels Prometheus adds to every scraped series (target labels of the ServiceMonitor or a
/// typical kubernetes_sd relabelling): allowed in grouping clauses though not in the exposition.
const TARGET_LABELS: [&str; 6] = ["job", "instance", "namespace", "pod", "service", "endpoint"];

async fn scrape(url: &str) -> String {
    let (status, text) = http_get(url).await.expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{text}");
    text
}

async fn wait_for_metric(url: &str, needle: &str, log: &Path) -> String {
    for _ in 0..300 {
        let text = scrape(url).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {needle} in the controller's /metrics after 30 s:\n{}\ncontroller log:\n{}",
        scrape(url).await,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_query_only_metrics_and_labels_that_exist() {
    // The real binary against this test binary's control plane and its own simulator.
    let ns = testkit::test_namespace("monitoring").await;
    let sim = EcsSim::start().await;
    let log = testkit::control_plane()
        .run_dir
        .join("controller-monitoring.log");
    let (_controller, metrics_url, health_url) = support::spawn_controller_binary(
        sim.endpoint(),
        (ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        &[],
        &log,
    );
    support::wait_ready(&health_url, &log).await;
    let h = Harness::attached(ns, sim);

    // A release: DeleteInstance OK and a release duration.
    h.seed("i-monreleased1", json!({ "status": "Stopped" }))
        .await;
    h.create("released", "i-monreleased1", json!({})).await;
    h.wait_for_condition("released", READY, "True", "InstanceObserved")
        .await;
    h.delete("released").await;
    h.wait_gone("released").await;

    // A throttled call: ECS answers Throttling to every DescribeInstances for a while (before
    // the blocked deletion, whose Stalled state a throttled recheck would turn into Throttled).
    h.sim
        .set_faults(json!([{
            "action": "DescribeInstances", "errorRate": 1.0, "errorCode": "Throttling"
        }]))
        .await;
    h.seed("i-monthrottled1", json!({ "status": "Running" }))
        .await;
    h.create("throttled", "i-monthrottled1", json!({})).await;
    wait_for_metric(
        &metrics_url,
        "ecs_instance_controller_ecs_throttled_total{",
        &log,
    )
    .await;
    h.sim.clear_faults().await;
    h.wait_for_condition("throttled", READY, "True", "InstanceObserved")
        .await;

    // A deletion blocked by a route entry: Stalled, counted by reason.
    h.seed(
        "i-monblocked1",
        json!({ "status": "Stopped", "routeEntry": true }),
    )
    .await;
    h.create("blocked", "i-monblocked1", json!({})).await;
    h.wait_for_condition("blocked", READY, "True", "InstanceObserved")
        .await;
    h.delete("blocked").await;
    h.wait_for_condition("blocked", STALLED, "True", "DependencyViolationRouteEntry")
        .await;

    let text = wait_for_metric(
        &metrics_url,
        r#"ecs_instance_controller_deletions_blocked_by_reason{reason="DependencyViolationRouteEntry"} 1"#,
        &log,
    )
    .await;
    for line in [
        "ecs_instance_controller_deletions_in_progress 1",
        "ecs_instance_controller_deletions_blocked 1",
        r#"ecs_instance_controller_ecs_requests_total{action="DeleteInstance",code="OK"} 1"#,
        "ecs_instance_controller_release_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "no {line} in:\n{text}");
    }

    let exposed = exposition(&text);
    let mut missing = Vec::new();
    for (origin, expr) in queries() {
        let found = needs(&expr);
        let mut labels_here: BTreeSet<&str> = TARGET_LABELS.into();
        for (metric, labels) in &found.metrics {
            let Some(exposed_labels) = exposed.get(metric) else {
                missing.push(format!("{origin}: metric {metric} is not exposed"));
                continue;
            };
            labels_here.extend(exposed_labels.iter().map(String::as_str));
            for label in labels.difference(exposed_labels) {
                missing.push(format!("{origin}: {metric} has no label {label}"));
            }
        }
        if !found.metrics.is_empty() {
            for label in &found.grouping {
                if !labels_here.contains(label.as_str()) {
                    missing.push(format!(
                        "{origin}: groups by {label}, which none of its metrics has"
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queries that name what the controller does not expose:\n  {}\n\nexposition:\n{text}",
        missing.join("\n  ")
    );

    // Let the blocked deletion finish, so nothing is left holding a finalizer.
    h.sim
        .patch_instance("i-monblocked1", json!({ "routeEntry": false }))
        .await;
    h.wait_gone("blocked").await;
}
