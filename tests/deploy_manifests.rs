//! `deploy/` as a user applies it, against the real kube-apiserver (with the CRD from `crds/`):
//! the kustomize base and the leader-election overlay pass a server-side dry run and the
//! `restricted` Pod Security Standard; the service account gets exactly the rights the
//! controller needs (checked with `kubectl auth can-i` as that account); the samples pass the
//! CRD's schema; the simulator component (deploy/components/simulator) renders and is admitted.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use testkit::{control_plane, test_namespace};

const CONTROLLER_NAMESPACE: &str = "ecs-system";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:ecs-system:ecs-instance-controller";
const ECSINSTANCES: &str = "ecsinstances.ecs.alicloud.dev";
const LEASES: &str = "leases.coordination.k8s.io";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the control plane's kubectl as the admin user, from the workspace root.
fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let plane = control_plane();
    let mut command = Command::new(plane.kubectl());
    command
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(args)
        .current_dir(workspace_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", plane.kubectl().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("kubectl stdin is piped");
        pipe.write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("wait for kubectl")
}

/// kubectl that must succeed; returns (stdout, stderr).
fn kubectl_ok(args: &[&str]) -> (String, String) {
    let output = kubectl(args, None);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kubectl {} failed ({}):\n{stderr}",
        args.join(" "),
        output.status
    );
    (stdout, stderr)
}

fn kubectl_json(args: &[&str]) -> (Value, String) {
    let (stdout, stderr) = kubectl_ok(args);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "kubectl {} printed no JSON ({e}):\n{stdout}",
            args.join(" ")
        )
    });
    (value, stderr)
}

/// The objects of `kubectl ... -o json`: a `List` for several, the object itself for one.
fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Object(mut map) if map.get("kind") == Some(&json!("List")) => {
            match map.remove("items") {
                Some(Value::Array(items)) => items,
                other => panic!("a List without items: {other:?}"),
            }
        }
        object => vec![object],
    }
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The base's Namespace, created for real once per test binary: a dry run of the namespaced
/// objects needs it to exist, and tests run in parallel.
fn ensure_controller_namespace() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        kubectl_ok(&["apply", "-f", "deploy/base/namespace.yaml"]);
    });
}

fn assert_no_pod_security_warning(stderr: &str) {
    assert!(
        !stderr.contains("would violate PodSecurity"),
        "the pod template breaks the `restricted` Pod Security Standard:\n{stderr}"
    );
}

fn deployment_of(objects: &[Value]) -> &Value {
    let deployments = of_kind(objects, "Deployment");
    assert_eq!(
        deployments.len(),
        1,
        "expected one Deployment: {deployments:#?}"
    );
    deployments[0]
}

#[tokio::test]
async fn base_passes_a_server_side_dry_run_and_the_restricted_pod_security_standard() {
    ensure_controller_namespace();
    let (rendered, stderr) =
        kubectl_json(&["apply", "--dry-run=server", "-k", "deploy/", "-o", "json"]);
    assert_no_pod_security_warning(&stderr);
    let objects = items(rendered);

    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    let expected: BTreeSet<&str> = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ]
    .into();
    assert_eq!(
        kinds, expected,
        "kinds in deploy/ (the CRD is installed from crds/, not here)"
    );
    for object in &objects {
        if object["kind"] != "Namespace"
            && object["kind"] != "ClusterRole"
            && object["kind"] != "ClusterRoleBinding"
        {
            assert_eq!(
                object["metadata"]["namespace"], CONTROLLER_NAMESPACE,
                "{object:#}"
            );
        }
    }

    let deployment = deployment_of(&objects);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "one replica must never overlap another"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ecs-instance-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsGroup"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        container["image"],
        format!("ecs-instance-controller:{}", env!("CARGO_PKG_VERSION")),
        "the base names the image of its own release"
    );
    assert_eq!(
        container["imagePullPolicy"], "IfNotPresent",
        "kind-loaded images must not be pulled"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["runAsNonRoot"], true);

    let port = |name: &str| {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .clone()
    };
    assert_eq!(
        port("metrics"),
        8080,
        "the controller's default --metrics-addr port"
    );
    assert_eq!(
        port("health"),
        8081,
        "the controller's default --health-addr port"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "health");

    let resources = &container["resources"];
    for (section, key) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(
            resources[section][key].is_string(),
            "resources.{section}.{key} missing: {resources:#}"
        );
    }

    let env = container["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name} in {env:#?}"))
    };
    assert_eq!(
        var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    for (name, key) in [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "accessKeyId"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "accessKeySecret"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "securityToken"),
    ] {
        let reference = &var(name)["valueFrom"]["secretKeyRef"];
        assert_eq!(
            reference,
            &json!({"name": "ecs-credentials", "key": key, "optional": true}),
            "{name} must come from the optional Secret"
        );
    }
    assert!(
        env.iter().all(|e| e.get("value").is_none()),
        "no literal env values: {env:#?}"
    );

    // Enforcement, not only the warning: the `restricted` namespace admits a Pod built from the
    // template (PodSecurity enforces on Pods, not on Deployments).
    let client = control_plane().client().await;
    let candidate: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "pod-security-probe", "namespace": CONTROLLER_NAMESPACE },
        "spec": pod,
    }))
    .expect("the pod template is a valid PodSpec");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client, CONTROLLER_NAMESPACE)
        .create(&dry_run, &candidate)
        .await
        .unwrap_or_else(|e| panic!("the `restricted` namespace refuses the controller's pod: {e}"));
}

#[test]
fn leader_election_overlay_runs_two_replicas_behind_a_lease() {
    ensure_controller_namespace();
    let (rendered, stderr) = kubectl_json(&[
        "apply",
        "--dry-run=server",
        "-k",
        "deploy/overlays/leader-election",
        "-o",
        "json",
    ]);
    assert_no_pod_security_warning(&stderr);
    let objects = items(rendered);
    let deployment = deployment_of(&objects);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .expect("args")
            .contains(&json!("--leader-election")),
        "args: {args}"
    );
    assert_eq!(
        of_kind(&objects, "Role").len(),
        1,
        "the lease Role comes with the overlay"
    );
}

/// `kubectl auth can-i` as the controller's service account.
fn can_i(verb: &str, resource: &str, subresource: Option<&str>, namespace: Option<&str>) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource];
    let subresource_flag = subresource.map(|s| format!("--subresource={s}"));
    args.extend(subresource_flag.as_deref());
    match namespace {
        Some(namespace) => args.extend(["-n", namespace]),
        None => args.push("--all-namespaces"),
    }
    let as_flag = format!("--as={SERVICE_ACCOUNT}");
    args.push(&as_flag);
    let output = kubectl(&args, None);
    let answer = String::from_utf8_lossy(&output.stdout);
    match answer.split_whitespace().next() {
        Some("yes") if output.status.success() => true,
        Some("no") => false,
        _ => panic!(
            "kubectl {} gave no answer ({}):\n{answer}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test]
async fn service_account_has_exactly_the_rights_the_controller_needs() {
    ensure_controller_namespace();
    kubectl_ok(&["apply", "-k", "deploy/"]);
    let team = test_namespace("rbac").await.name;
    let team = Some(team.as_str());
    let own = Some(CONTROLLER_NAMESPACE);
    let everywhere = None;

    // (verb, resource, subresource, namespace): what the controller does.
    let allowed = [
        ("get", ECSINSTANCES, None, team),
        ("list", ECSINSTANCES, None, everywhere),
        ("watch", ECSINSTANCES, None, everywhere),
        ("patch", ECSINSTANCES, None, team),
        ("get", ECSINSTANCES, Some("status"), team),
        ("patch", ECSINSTANCES, Some("status"), team),
        ("update", ECSINSTANCES, Some("finalizers"), team),
        ("get", "secrets", None, team),
        ("list", "secrets", None, everywhere),
        ("watch", "secrets", None, everywhere),
        // The in-use finalizer of credentials Secrets.
        ("patch", "secrets", None, team),
        ("create", "events.events.k8s.io", None, team),
        ("patch", "events.events.k8s.io", None, team),
        ("get", LEASES, None, own),
        ("create", LEASES, None, own),
        ("update", LEASES, None, own),
        ("patch", LEASES, None, own),
    ];
    // What it must never be able to do.
    let denied = [
        ("create", ECSINSTANCES, None, team),
        ("update", ECSINSTANCES, None, team),
        ("delete", ECSINSTANCES, None, team),
        ("deletecollection", ECSINSTANCES, None, team),
        ("update", ECSINSTANCES, Some("status"), team),
        ("create", "secrets", None, team),
        ("update", "secrets", None, team),
        ("delete", "secrets", None, team),
        ("create", "secrets", None, own),
        ("list", "pods", None, team),
        ("get", "pods", None, own),
        ("create", "events", None, team),
        ("delete", "events.events.k8s.io", None, team),
        ("get", LEASES, None, team),
        ("create", LEASES, None, team),
        ("create", LEASES, None, Some("default")),
        ("create", LEASES, None, everywhere),
        ("delete", LEASES, None, own),
        ("list", LEASES, None, own),
        ("create", "clusterrolebindings", None, everywhere),
        ("escalate", "clusterroles", None, everywhere),
        (
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            everywhere,
        ),
        ("*", "*", None, everywhere),
        ("*", "*", None, own),
        ("*", ECSINSTANCES, None, team),
    ];

    let mut wrong = Vec::new();
    for (expected, checks) in [(true, &allowed[..]), (false, &denied[..])] {
        for &(verb, resource, subresource, namespace) in checks {
            if can_i(verb, resource, subresource, namespace) != expected {
                wrong.push(format!(
                    "{} {verb} {resource}{} in {}",
                    if expected { "cannot" } else { "CAN" },
                    subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                    namespace.unwrap_or("all namespaces"),
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{SERVICE_ACCOUNT}:\n  {}",
        wrong.join("\n  ")
    );
}

fn sample_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn read_yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Sample credentials carry obvious placeholders, never anything that looks like a key.
fn assert_placeholder_credentials(secret: &Value, path: &Path) {
    let data = secret["stringData"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no stringData", path.display()));
    for key in ["accessKeyId", "accessKeySecret"] {
        let value = data.get(key).and_then(Value::as_str).unwrap_or_default();
        assert!(
            value.starts_with("REPLACE_WITH_"),
            "{}: {key} is not a placeholder",
            path.display()
        );
    }
    assert!(
        secret.get("data").is_none(),
        "{}: use stringData only",
        path.display()
    );
}

#[tokio::test]
async fn samples_pass_the_crd_schema() {
    let namespace = test_namespace("samples").await.name;
    let dir = workspace_root().join("deploy/samples");
    let files = sample_files(&dir);
    let (rendered, _) = kubectl_json(&[
        "apply",
        "--dry-run=server",
        "-n",
        &namespace,
        "-f",
        "deploy/samples/",
        "-o",
        "json",
    ]);
    let objects = items(rendered);
    assert_eq!(objects.len(), files.len(), "one object per sample file");

    let instances = of_kind(&objects, "EcsInstance");
    let instance_files = files
        .iter()
        .filter(|f| read_yaml(f)["kind"] == "EcsInstance")
        .count();
    assert_eq!(instances.len(), instance_files);
    for instance in &instances {
        // Filled in by the schema's defaults: proof the server validated against the CRD.
        assert!(
            instance["spec"]["onDelete"]["stop"].is_string(),
            "not defaulted: {instance:#}"
        );
    }
    let has = |predicate: &dyn Fn(&Value) -> bool| instances.iter().any(|i| predicate(&i["spec"]));
    assert!(has(&|s| s["onDelete"]["stop"] == "Wait"
        && s["onDelete"]["force"] == false
        && s["deletionPolicy"].is_null()));
    assert!(has(&|s| s["onDelete"]["stop"] == "Stop"));
    assert!(has(&|s| s["onDelete"]["stop"] == "ForceStop"));
    assert!(has(&|s| s["onDelete"]["force"] == true));
    assert!(has(&|s| s["deletionPolicy"] == "Orphan"));

    let secrets: BTreeSet<&str> = of_kind(&objects, "Secret")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    let referenced: Vec<&str> = instances
        .iter()
        .filter_map(|i| i["spec"]["credentialsRef"]["name"].as_str())
        .collect();
    assert!(!referenced.is_empty(), "no sample uses credentialsRef");
    for name in referenced {
        assert!(
            secrets.contains(name),
            "credentialsRef {name} names no sample Secret ({secrets:?})"
        );
    }
    for file in &files {
        let sample = read_yaml(file);
        if sample["kind"] == "Secret" {
            assert_placeholder_credentials(&sample, file);
        }
    }

    // The same dry run refuses what the schema does not allow, so the pass above means something.
    let broken = std::fs::read_to_string(dir.join("ecsinstance-stop.yaml"))
        .expect("read sample")
        .replace("stop: Stop", "stop: Sometimes");
    let refused = kubectl(
        &["apply", "--dry-run=server", "-n", &namespace, "-f", "-"],
        Some(&broken),
    );
    assert!(
        !refused.status.success(),
        "the API server accepted `stop: Sometimes`"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Sometimes") && stderr.contains("Unsupported value"),
        "{stderr}"
    );
}

#[test]
fn controller_credentials_sample_matches_the_deployment() {
    ensure_controller_namespace();
    let path = workspace_root().join("deploy/samples/controller/ecs-credentials.yaml");
    assert_placeholder_credentials(&read_yaml(&path), &path);
    let (secret, _) = kubectl_json(&[
        "apply",
        "--dry-run=server",
        "-f",
        "deploy/samples/controller/ecs-credentials.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(secret["metadata"]["namespace"], CONTROLLER_NAMESPACE);

    let (rendered, _) = kubectl_ok(&["kustomize", "deploy/"]);
    let deployment = rendered
        .split("\n---\n")
        .map(serde_saphyr::from_str::<Value>)
        .map(|doc| doc.expect("kustomize output parses"))
        .find(|doc| doc["kind"] == "Deployment")
        .expect("a Deployment in deploy/");
    let keys: BTreeSet<&str> = secret["data"]
        .as_object()
        .expect("data")
        .keys()
        .map(String::as_str)
        .collect();
    for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
    {
        let reference = &env["valueFrom"]["secretKeyRef"];
        if reference.is_null() || reference["name"] != secret["metadata"]["name"] {
            continue;
        }
        let key = reference["key"].as_str().expect("key");
        assert!(
            keys.contains(key) || key == "securityToken",
            "the Deployment reads {key}, which the sample Secret lacks ({keys:?})"
        );
    }
}

/// The simulator component (deploy/components/simulator, through deploy/overlays/simulator):
/// the test double runs next to the controller in the `restricted` namespace, the controller
/// points at its Service with the explicit opt-in to plain HTTP and its test account, and the
/// simulator's pods are never the controller's (selectors apart).
#[tokio::test]
async fn simulator_component_passes_a_server_side_dry_run_and_the_restricted_standard() {
    ensure_controller_namespace();
    let (rendered, stderr) = kubectl_json(&[
        "apply",
        "--dry-run=server",
        "-k",
        "deploy/overlays/simulator",
        "-o",
        "json",
    ]);
    assert_no_pod_security_warning(&stderr);
    let objects = items(rendered);
    let named = |kind: &str, name: &str| -> Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/overlays/simulator"))
            .clone()
    };
    let sim = named("Deployment", "ecs-instance-controller-sim");
    let controller = named("Deployment", "ecs-instance-controller");
    let service = named("Service", "ecs-instance-controller-sim");
    named("ConfigMap", "ecs-instance-controller-sim-seed");
    named("Secret", "ecs-instance-controller-sim-credentials");

    let pod = &sim["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("ecs-sim:{}", env!("CARGO_PKG_VERSION")),
        "the component names the simulator image of its own release"
    );
    let args = container["args"].as_array().expect("args");
    for flag in ["--listen=0.0.0.0:9100", "--allow-non-loopback"] {
        assert!(args.contains(&json!(flag)), "{flag} missing: {args:?}");
    }
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/_sim/health"
    );
    assert_eq!(
        service["spec"]["selector"], sim["spec"]["selector"]["matchLabels"],
        "the Service selects the simulator"
    );
    // Selectors apart: neither Deployment (nor the metrics Service) adopts the other's pods.
    let labels = |deployment: &Value| deployment["spec"]["template"]["metadata"]["labels"].clone();
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .expect("a selector")
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    assert!(!selects(
        &controller["spec"]["selector"]["matchLabels"],
        &labels(&sim)
    ));
    assert!(!selects(
        &sim["spec"]["selector"]["matchLabels"],
        &labels(&controller)
    ));

    let controller_container = &controller["spec"]["template"]["spec"]["containers"][0];
    assert!(
        controller_container["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--allow-insecure-endpoint"))
    );
    let env = controller_container["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"))
    };
    assert_eq!(
        var("ECS_ENDPOINT")["value"],
        "http://$(ECS_INSTANCE_CONTROLLER_SIM_SERVICE_HOST):9100"
    );
    assert_eq!(
        var("ALIBABA_CLOUD_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["name"],
        "ecs-instance-controller-sim-credentials"
    );

    // Enforcement: the `restricted` namespace admits the simulator's Pod.
    let client = control_plane().client().await;
    let candidate: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "sim-pod-security-probe", "namespace": CONTROLLER_NAMESPACE },
        "spec": pod,
    }))
    .expect("the simulator's pod template is a valid PodSpec");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client, CONTROLLER_NAMESPACE)
        .create(&dry_run, &candidate)
        .await
        .unwrap_or_else(|e| panic!("the `restricted` namespace refuses the simulator's pod: {e}"));
}
