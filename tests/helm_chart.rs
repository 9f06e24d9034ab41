//! `charts/ecs-instance-controller` against `deploy/`, with the real helm (built from the Go module
//! proxy by `scripts/build-helm.sh`, `$HELM` set by `scripts/test.sh`): `helm lint --strict`
//! passes; `helm template` renders, object by object, what `kubectl kustomize` renders for
//! deploy/, the leader-election, namespaced and e2e overlays and deploy/monitoring; the optional
//! objects pass a server-side dry run against the real kube-apiserver; the chart's copies of the
//! alerts and the dashboard are those of deploy/monitoring; its appVersion is the crate's version;
//! `simulator.enabled` renders deploy/overlays/simulator (the simulator as a test double).
//! (The chart's copy of the CRD is checked by a unit test in src/lib.rs.)

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use serde_json::Value;
use testkit::control_plane;

const CHART: &str = "charts/ecs-instance-controller";
/// The release name and namespace that give the chart the names of deploy/.
const RELEASE: &str = "ecs-instance-controller";
const NAMESPACE: &str = "ecs-system";

/// Helm's standard labels, which only the chart sets and the comparison with deploy/ ignores:
/// they name the chart and release (`helm.sh/chart`, `app.kubernetes.io/instance`,
/// `app.kubernetes.io/version`, `app.kubernetes.io/managed-by`). Ignored only in
/// `metadata.labels` (every object) and in a pod template's labels; every other label
/// (`app.kubernetes.io/name`, `app.kubernetes.io/part-of`, `grafana_dashboard`), the selectors
/// and every other field must be equal.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let path = workspace_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `$HELM`, else whatever `scripts/build-helm.sh` prints (it builds once into the cache outside
/// the repository, then is a no-op). Panics when there is no helm: never skips.
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let binary = testkit::tools::built_by("HELM", "build-helm.sh");
        assert!(
            binary.is_file(),
            "helm is missing at {}: run scripts/build-helm.sh and set HELM to the path it prints \
             (or unset HELM to let this test build it)",
            binary.display()
        );
        binary
    })
}

/// Runs helm from the workspace root with its state under cargo's scratch directory for tests
/// (no user config, no repositories); its output, whatever the exit.
fn helm(args: &[&str]) -> Output {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm_chart");
    Command::new(helm_binary())
        .args(args)
        .current_dir(workspace_root())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", helm_binary().display()))
}

fn assert_success(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The YAML documents of a stream, empty ones left out.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("parse the rendered YAML ({e}):\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `helm template` of the chart as release `ecs-instance-controller` in `ecs-system`.
fn template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    documents(&assert_success(
        &format!("helm {}", args.join(" ")),
        &helm(&args),
    ))
}

/// The control plane's kubectl as the admin user, from the workspace root.
fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let plane = control_plane();
    let mut child = Command::new(plane.kubectl())
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", plane.kubectl().display()));
    let mut pipe = child.stdin.take().expect("kubectl stdin is piped");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write kubectl stdin");
    drop(pipe);
    child.wait_with_output().expect("wait for kubectl")
}

fn kustomize(dir: &str) -> Vec<Value> {
    documents(&assert_success(
        &format!("kubectl kustomize {dir}"),
        &kubectl(&["kustomize", dir], None),
    ))
}

type Key = (String, String, String);

fn key(object: &Value) -> Key {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn without_helm_labels(mut object: Value) -> Value {
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
            for label in HELM_LABELS {
                labels.remove(label);
            }
        }
    }
    object
}

fn by_key(objects: Vec<Value>) -> BTreeMap<Key, Value> {
    let mut map = BTreeMap::new();
    for object in objects {
        let key = key(&object);
        assert!(
            map.insert(key.clone(), object).is_none(),
            "{key:?} rendered twice"
        );
    }
    map
}

/// The chart renders the same objects as kustomize, but for the controller's Namespace, which the
/// chart leaves to `kubectl apply -f deploy/base/namespace.yaml` (or `--create-namespace`):
/// Helm would delete a release namespace it owns, with everything in it, on uninstall.
fn assert_same_objects(chart: Vec<Value>, kustomized: Vec<Value>, what: &str) {
    let chart = by_key(chart);
    let mut kustomized = by_key(kustomized);
    let namespace = kustomized.remove(&("Namespace".into(), String::new(), NAMESPACE.into()));
    assert!(
        namespace.is_some(),
        "{what}: kustomize renders the Namespace {NAMESPACE}"
    );
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomized.keys().collect::<Vec<_>>(),
        "{what}: the chart renders other objects (kind, namespace, name) than kustomize"
    );
    for (key, object) in chart {
        let ours = without_helm_labels(object.clone());
        let theirs = &kustomized[&key];
        let mut differences = Vec::new();
        diff(&ours, theirs, String::new(), &mut differences);
        assert!(
            differences.is_empty(),
            "{what}: {key:?} differs from kustomize's (chart, Helm's labels removed | kustomize):\n{}",
            differences.join("\n")
        );
        // The ignored labels are Helm's: every object carries them.
        for label in HELM_LABELS {
            assert!(
                object["metadata"]["labels"][label].is_string(),
                "{what}: {key:?} lacks the label {label}"
            );
        }
    }
}

/// Where two values differ, as JSON pointers with both sides (shortened).
fn diff(ours: &Value, theirs: &Value, path: String, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                diff(x, y, format!("{path}/{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, format!("{path}/{i}"), out);
            }
        }
        (a, b) if a != b => {
            let short = |v: &Value| v.to_string().chars().take(300).collect::<String>();
            out.push(format!("  {path}: {} | {}", short(a), short(b)));
        }
        _ => {}
    }
}

#[test]
fn helm_lint_strict_passes() {
    for values in [
        vec![],
        vec!["--set", "replicaCount=2"],
        vec![
            "--set",
            "rbac.namespaced=true,watchNamespaces={team-a,team-b}",
        ],
        vec![
            "--set",
            "podDisruptionBudget.enabled=true,networkPolicy.enabled=true,\
             networkPolicy.egress.enabled=true,serviceMonitor.enabled=true,\
             prometheusRule.enabled=true,grafanaDashboard.enabled=true",
        ],
        vec!["-f", "deploy/overlays/e2e/helm-values.yaml"],
        vec![
            "--set",
            "simulator.enabled=true,networkPolicy.enabled=true,networkPolicy.egress.enabled=true",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART, "--namespace", NAMESPACE];
        args.extend_from_slice(&values);
        let stdout = assert_success(&format!("helm {}", args.join(" ")), &helm(&args));
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }
}

#[test]
fn default_values_render_deploy() {
    assert_same_objects(template(&[]), kustomize("deploy/"), "default values");
}

#[test]
fn two_replicas_render_the_leader_election_overlay() {
    assert_same_objects(
        template(&["--set", "replicaCount=2"]),
        kustomize("deploy/overlays/leader-election"),
        "replicaCount=2",
    );
}

#[test]
fn leader_election_with_one_replica_also_rolls_without_overlap() {
    let objects = template(&["--set", "leaderElection.enabled=true"]);
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--leader-election"))
    );
}

#[test]
fn namespaced_values_render_the_namespaced_overlay() {
    assert_same_objects(
        template(&[
            "--set",
            "rbac.namespaced=true",
            "--set",
            "watchNamespaces={team-a,team-b}",
        ]),
        kustomize("deploy/overlays/namespaced"),
        "rbac.namespaced",
    );
}

#[test]
fn namespaced_rbac_without_namespaces_is_refused() {
    let output = helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--set",
        "rbac.namespaced=true",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("rbac.namespaced=true needs watchNamespaces"),
        "{stderr}"
    );
}

/// The values node-e2e installs with render exactly the e2e overlay.
#[test]
fn e2e_values_render_the_e2e_overlay() {
    assert_same_objects(
        template(&["-f", "deploy/overlays/e2e/helm-values.yaml"]),
        kustomize("deploy/overlays/e2e"),
        "deploy/overlays/e2e/helm-values.yaml",
    );
}

#[test]
fn monitoring_values_render_deploy_monitoring() {
    let chart = template(&[
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
    ]);
    let mut kustomized = kustomize("deploy/");
    kustomized.extend(kustomize("deploy/monitoring/"));
    // kubectl kustomize re-emits a folded (`>-`) expression with a blank line added before each
    // more-indented line (kyaml; PromQL ignores it, YAML says one newline, as Helm reads it): the
    // rules are compared with the committed PrometheusRule itself.
    let committed: Value = serde_saphyr::from_str(&read("deploy/monitoring/prometheusrule.yaml"))
        .expect("deploy/monitoring/prometheusrule.yaml parses");
    for object in &mut kustomized {
        if object["kind"] == "PrometheusRule" {
            object["spec"] = committed["spec"].clone();
        }
    }
    assert_same_objects(chart, kustomized, "monitoring values");
}

/// Helm reads no file outside the chart, so the chart carries copies of deploy/monitoring's
/// rules and dashboard (loaded with .Files, not as templates, so Prometheus's own `{{ }}` pass
/// through); they must be the same bytes.
#[test]
fn the_charts_alerts_and_dashboard_are_deploy_monitorings() {
    for file in ["alerts.yaml", "dashboard.json"] {
        assert!(
            read(&format!("{CHART}/files/{file}")) == read(&format!("deploy/monitoring/{file}")),
            "{CHART}/files/{file} differs from deploy/monitoring/{file}: \
             cp deploy/monitoring/{file} {CHART}/files/"
        );
    }
}

#[test]
fn app_version_is_the_crate_version() {
    let chart: Value =
        serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml parses");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["name"], RELEASE);
}

/// PodDisruptionBudget and NetworkPolicy (with every option) and the rest of the chart pass a
/// server-side dry run and the `restricted` Pod Security Standard of the namespace.
#[test]
fn optional_objects_pass_a_server_side_dry_run() {
    assert_success(
        "kubectl apply deploy/base/namespace.yaml",
        &kubectl(&["apply", "-f", "deploy/base/namespace.yaml"], None),
    );
    for namespace in ["team-a", "team-b"] {
        let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
        assert_success(
            "kubectl apply a namespace",
            &kubectl(&["apply", "-f", "-"], Some(&manifest)),
        );
    }
    let rendered = assert_success(
        "helm template with the optional objects",
        &helm(&[
            "template",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--set",
            "replicaCount=2,podDisruptionBudget.enabled=true,networkPolicy.enabled=true,\
             networkPolicy.egress.enabled=true,rbac.namespaced=true,watchNamespaces={team-a,team-b}",
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        ]),
    );
    let output = kubectl(
        &["apply", "--dry-run=server", "-f", "-", "-o", "json"],
        Some(&rendered),
    );
    let stdout = assert_success("kubectl apply --dry-run=server", &output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("would violate PodSecurity"),
        "the pod template breaks the `restricted` Pod Security Standard:\n{stderr}"
    );
    let accepted: Value = serde_json::from_str(&stdout).expect("kubectl printed JSON");
    let kinds: Vec<&str> = accepted["items"]
        .as_array()
        .expect("a List")
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    for kind in ["PodDisruptionBudget", "NetworkPolicy", "Deployment"] {
        assert!(
            kinds.contains(&kind),
            "the API server did not accept a {kind}: {kinds:?}"
        );
    }
    let policy = accepted["items"]
        .as_array()
        .expect("a List")
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .expect("the NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
}

fn deployment_of(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")
}

#[test]
fn the_image_defaults_to_the_release_and_takes_a_registry_and_a_digest() {
    let image = |extra: &[&str]| {
        deployment_of(&template(extra))["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("an image")
            .to_string()
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(image(&[]), format!("ecs-instance-controller:{version}"));
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        image(&[
            "--set",
            "image.registry=registry.example:5000/platform/",
            "--set",
            &format!("image.digest={digest}"),
        ]),
        format!("registry.example:5000/platform/ecs-instance-controller:{version}@{digest}")
    );
}

#[test]
fn values_are_checked_against_the_schema() {
    for bad in [
        "image.pullPolicy=Sometimes",
        "replicaCount=0",
        "rrsa.roleArn=not-an-arn",
        "imageTag=typo-at-the-top-level",
        "serviceAccount.automount=maybe",
    ] {
        let out = helm(&["lint", CHART, "--set", bad]);
        assert!(
            !out.status.success(),
            "helm lint accepted --set {bad}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_success("helm lint", &helm(&["lint", CHART]));
}

#[test]
fn rrsa_mounts_a_projected_token_and_sets_the_variables_the_credentials_chain_reads() {
    let objects = template(&[
        "--set",
        "rrsa.enabled=true",
        "--set",
        "rrsa.roleArn=acs:ram::1234567890123456:role/ecs-releaser",
        "--set",
        "rrsa.oidcProviderArn=acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1",
        "--set",
        "serviceAccount.annotations.team=platform",
    ]);
    let pod = &deployment_of(&objects)["spec"]["template"]["spec"];
    let env = pod["containers"][0]["env"].as_array().expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        value("ALIBABA_CLOUD_ROLE_ARN").as_deref(),
        Some("acs:ram::1234567890123456:role/ecs-releaser")
    );
    assert_eq!(
        value("ALIBABA_CLOUD_OIDC_TOKEN_FILE").as_deref(),
        Some("/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token")
    );
    assert!(
        value("ALIBABA_CLOUD_ACCESS_KEY_ID").is_none(),
        "with RRSA no stored key takes precedence in the chain"
    );
    let volume = &pod["volumes"][0];
    assert_eq!(volume["name"], "rrsa-oidc-token");
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.aliyuncs.com"
    );
    let account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .expect("a ServiceAccount");
    assert_eq!(account["metadata"]["annotations"]["team"], "platform");

    // RRSA without its ARNs is refused at render time.
    let out = helm(&["template", RELEASE, CHART, "--set", "rrsa.enabled=true"]);
    assert!(!out.status.success());
}

#[test]
fn an_existing_service_account_is_bound_instead_of_a_new_one() {
    let objects = template(&[
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=platform-identity",
    ]);
    assert!(objects.iter().all(|o| o["kind"] != "ServiceAccount"));
    assert_eq!(
        deployment_of(&objects)["spec"]["template"]["spec"]["serviceAccountName"],
        "platform-identity"
    );
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        assert_eq!(binding["subjects"][0]["name"], "platform-identity");
    }
}

/// `simulator.enabled=true` renders exactly what deploy/ with the simulator component renders
/// (deploy/overlays/simulator): the test double users deploy, either way.
#[test]
fn simulator_values_render_the_simulator_overlay() {
    assert_same_objects(
        template(&["--set", "simulator.enabled=true"]),
        kustomize("deploy/overlays/simulator"),
        "simulator.enabled=true",
    );
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_simulator_runs_next_to_the_controller_seeded_from_the_values() {
    let seed =
        r#"[{"instanceId":"i-recipe0000000001","regionId":"cn-hangzhou","status":"Stopped"}]"#;
    let seed_flag = format!("simulator.seed={seed}");
    let objects = template(&[
        "--set",
        "simulator.enabled=true,simulator.extraArgs={--transition-ms=200}",
        "--set-json",
        &seed_flag,
        "--set",
        "networkPolicy.enabled=true,networkPolicy.egress.enabled=true",
    ]);
    let sim = "ecs-instance-controller-sim";

    // The seed, as the simulator reads it.
    let config = find(&objects, "ConfigMap", &format!("{sim}-seed"));
    let rendered: Value =
        serde_json::from_str(config["data"]["instances.json"].as_str().expect("a string"))
            .expect("instances.json is JSON");
    assert_eq!(rendered, serde_json::from_str::<Value>(seed).unwrap());

    // The simulator: its own image and selector, reachable on 9100, probed on its health path.
    let deployment = find(&objects, "Deployment", sim);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("ecs-sim:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        container["args"],
        serde_json::json!([
            "--listen=0.0.0.0:9100",
            "--allow-non-loopback",
            "--seed=/seed/instances.json",
            "--transition-ms=200"
        ])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["path"], "/_sim/health",
            "{probe}"
        );
    }
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        format!("{sim}-seed")
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        selector,
        &serde_json::json!({"app.kubernetes.io/name": "ecs-sim"})
    );
    let service = find(&objects, "Service", sim);
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(service["spec"]["ports"][0]["port"], 9100);
    // The controller's metrics Service selects only the controller's pods.
    let metrics = find(&objects, "Service", "ecs-instance-controller-metrics");
    assert_eq!(
        metrics["spec"]["selector"]["app.kubernetes.io/name"],
        "ecs-instance-controller"
    );

    // The controller: the simulator's Service, the explicit opt-in to plain HTTP, the test
    // account from the chart's Secret.
    let controller = &find(&objects, "Deployment", "ecs-instance-controller")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(
        env_value(controller, "ECS_ENDPOINT")["value"],
        "http://$(ECS_INSTANCE_CONTROLLER_SIM_SERVICE_HOST):9100"
    );
    assert!(
        controller["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--allow-insecure-endpoint"))
    );
    for variable in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    ] {
        assert_eq!(
            env_value(controller, variable)["valueFrom"]["secretKeyRef"]["name"],
            format!("{sim}-credentials")
        );
    }
    let secret = find(&objects, "Secret", &format!("{sim}-credentials"));
    assert_eq!(
        secret["stringData"],
        serde_json::json!({"accessKeyId": "testid", "accessKeySecret": "testsecret"})
    );

    // The NetworkPolicy's egress lets the controller reach the simulator's pods.
    let policy = find(&objects, "NetworkPolicy", "ecs-instance-controller");
    let egress = policy["spec"]["egress"].as_array().expect("egress");
    assert!(
        egress.iter().any(|rule| rule["ports"][0]["port"] == 9100
            && rule["to"][0]["podSelector"]["matchLabels"] == *selector),
        "{egress:#?}"
    );
}

#[test]
fn the_simulator_image_follows_the_controllers_conventions() {
    let image = |extra: &[&str]| {
        let mut args = vec!["--set", "simulator.enabled=true"];
        args.extend_from_slice(extra);
        let objects = template(&args);
        let container = &find(&objects, "Deployment", "ecs-instance-controller-sim")["spec"]["template"]
            ["spec"]["containers"][0];
        (
            container["image"].as_str().expect("image").to_string(),
            container["imagePullPolicy"]
                .as_str()
                .expect("pull policy")
                .to_string(),
        )
    };
    // Local images: one registry, tag and pull policy for both.
    assert_eq!(
        image(&[
            "--set",
            "image.registry=localhost,image.tag=dev,image.pullPolicy=Never"
        ]),
        ("localhost/ecs-sim:dev".to_string(), "Never".to_string())
    );
    let digest = format!("sha256:{}", "cd".repeat(32));
    assert_eq!(
        image(&[
            "--set",
            "image.registry=registry.example/platform,simulator.image.registry=registry.example/test/",
            "--set",
            &format!("simulator.image.tag=1.2.3,simulator.image.digest={digest}"),
        ]),
        (
            format!("registry.example/test/ecs-sim:1.2.3@{digest}"),
            "IfNotPresent".to_string()
        )
    );
}

#[test]
fn an_existing_seed_config_map_replaces_the_charts() {
    let objects = template(&[
        "--set",
        "simulator.enabled=true,simulator.seedConfigMap=my-seed",
    ]);
    assert!(
        objects.iter().all(|o| o["kind"] != "ConfigMap"),
        "the chart makes no seed ConfigMap of its own"
    );
    let pod =
        &find(&objects, "Deployment", "ecs-instance-controller-sim")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "my-seed");
}

#[test]
fn without_the_simulator_nothing_of_it_renders() {
    let objects = template(&[]);
    assert!(
        objects.iter().all(|o| !o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .contains("-sim")),
        "simulator objects rendered by default"
    );
    let controller = &deployment_of(&objects)["spec"]["template"]["spec"]["containers"][0];
    assert!(
        !controller["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--allow-insecure-endpoint"))
    );
}

#[test]
fn bad_simulator_values_are_refused() {
    let refused = |args: &[&str], message: &str| {
        let mut all = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
        all.extend_from_slice(args);
        let out = helm(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "helm template {args:?} was not refused with {message:?}:\n{stderr}"
        );
    };
    // By the schema.
    for bad in [
        "simulator.enabled=yes",
        "simulator.image.pullPolicy=Sometimes",
        "simulator.image.digest=md5:abc",
        "simulator.seedConfigMap=Not_A_Name",
        "simulator.accountsConfigMap=Not_A_Name",
        "simulator.listen=0.0.0.0:9100",
    ] {
        refused(
            &["--set", bad],
            "values don't meet the specifications of the schema",
        );
    }
    for seed in [
        r#"simulator.seed=[{"regionId":"cn-hangzhou"}]"#,
        r#"simulator.seed=[{"instanceId":"not-an-id","regionId":"cn-hangzhou"}]"#,
        r#"simulator.seed={"instanceId":"i-recipe0000000001"}"#,
    ] {
        refused(
            &["--set-json", seed],
            "values don't meet the specifications of the schema",
        );
    }
    // By the chart's checks.
    refused(
        &[
            "--set",
            "simulator.enabled=true,simulator.seedConfigMap=my-seed",
            "--set-json",
            r#"simulator.seed=[{"instanceId":"i-recipe0000000001","regionId":"cn-hangzhou"}]"#,
        ],
        "not both",
    );
    refused(
        &[
            "--set",
            "simulator.enabled=true,rrsa.enabled=true",
            "--set",
            "rrsa.roleArn=acs:ram::1234567890123456:role/r,rrsa.oidcProviderArn=acs:ram::1234567890123456:oidc-provider/p",
        ],
        "needs simulator.accountsConfigMap",
    );
    refused(
        &["--set", "simulator.accountsConfigMap=sim-accounts"],
        "simulator.accountsConfigMap needs simulator.enabled=true",
    );
}

/// RRSA against the simulator: the controller gets RRSA's variables and projected token, no
/// stored key, and the simulator's Service as its STS endpoint; the simulator reads the accounts
/// file (roles, OIDC providers) from the given ConfigMap.
#[test]
fn rrsa_with_the_simulator_exchanges_the_token_at_the_simulators_sts() {
    let rrsa = [
        "--set",
        "simulator.enabled=true,rrsa.enabled=true,simulator.accountsConfigMap=sim-accounts",
        "--set",
        "rrsa.roleArn=acs:ram::1234567890123456:role/r,rrsa.oidcProviderArn=acs:ram::1234567890123456:oidc-provider/p",
    ];
    let objects = template(&rrsa);
    let sim = "ecs-instance-controller-sim";
    let pod = &find(&objects, "Deployment", "ecs-instance-controller")["spec"]["template"]["spec"];
    let controller = &pod["containers"][0];
    let endpoint = "http://$(ECS_INSTANCE_CONTROLLER_SIM_SERVICE_HOST):9100";
    assert_eq!(env_value(controller, "ECS_ENDPOINT")["value"], endpoint);
    assert_eq!(
        env_value(controller, "ALIBABA_CLOUD_STS_ENDPOINT")["value"],
        endpoint
    );
    assert_eq!(
        env_value(controller, "ALIBABA_CLOUD_ROLE_ARN")["value"],
        "acs:ram::1234567890123456:role/r"
    );
    assert_eq!(
        env_value(controller, "ALIBABA_CLOUD_OIDC_TOKEN_FILE")["value"],
        "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"
    );
    let names: Vec<&str> = controller["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "no stored key takes precedence over RRSA in the chain: {names:?}"
    );
    assert!(
        controller["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--allow-insecure-endpoint"))
    );
    assert_eq!(
        pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.aliyuncs.com"
    );

    let sim_pod = &find(&objects, "Deployment", sim)["spec"]["template"]["spec"];
    let container = &sim_pod["containers"][0];
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--accounts-file=/accounts/accounts.json"))
    );
    assert!(
        sim_pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == "accounts" && v["configMap"]["name"] == "sim-accounts"),
        "{sim_pod:#?}"
    );

    // An STS endpoint of the operator's wins.
    let mut own = rrsa.to_vec();
    own.extend_from_slice(&["--set", "credentials.stsEndpoint=http://sts.test:9200"]);
    let objects = template(&own);
    let controller = &find(&objects, "Deployment", "ecs-instance-controller")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(
        env_value(controller, "ALIBABA_CLOUD_STS_ENDPOINT")["value"],
        "http://sts.test:9200"
    );
}
