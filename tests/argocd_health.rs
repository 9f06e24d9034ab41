//! The Argo CD health check in `gitops/argocd/ecs.alicloud.dev/EcsInstance/` (Argo CD's
//! `resource_customizations` layout), run on every case of its `health_test.yaml` by
//! `argolua` (`tools/gitops-check/argolua`, built by `scripts/build-gitops-check.sh`): gopher-lua
//! at the version Argo CD v3.6.1 pins, with the libraries Argo CD opens for a check installed in
//! argocd-cm (base, table, package and a safe os; no string or math), and Argo CD's assessment of
//! the result (Unknown on a script error, the `deletionMessage` rule for objects being deleted).
//! The objects the real controller writes are judged by the same harness in `tests/kstatus.rs`.
//! `tests/argocd_upstream.rs` checks that the harness still does what that Argo CD release does.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

/// Runs `argolua` with `args` and `stdin`; its JSON lines and whether it exited 0.
fn argolua(args: &[&str], stdin: &str) -> (Vec<Value>, bool) {
    let output = testkit::tools::run_with_input(
        &testkit::gitops::checker("argolua"),
        args,
        stdin.as_bytes(),
    );
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "argolua {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("argolua prints JSON lines"))
        .collect();
    (lines, output.status.success())
}

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Value,
    input_path: String,
}

fn check_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gitops/argocd/ecs.alicloud.dev/EcsInstance")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn health_tests() -> HealthTests {
    serde_saphyr::from_str(&read(&check_dir().join("health_test.yaml")))
        .expect("parse health_test.yaml")
}

/// Argo CD's own test of a health check: the script's result equals `healthStatus` (status,
/// message and, for objects being deleted, `deletionMessage`). Then what Argo CD shows: the
/// same status and message, or for an object being deleted the status with the
/// `deletionMessage` — never the default "Pending deletion", which would hide a stalled release.
#[test]
fn every_case_of_health_test_yaml_gets_its_status_and_message() {
    let dir = check_dir();
    let cases = health_tests();
    assert!(!cases.tests.is_empty(), "health_test.yaml has no tests");
    let (results, all_passed) = argolua(&["test", dir.to_str().expect("UTF-8 path")], "");
    assert_eq!(results.len(), cases.tests.len(), "one result per case");

    let mut failures = Vec::new();
    for (case, result) in cases.tests.iter().zip(&results) {
        assert_eq!(result["inputPath"], case.input_path.as_str());
        let path = &case.input_path;
        if result["pass"] != true {
            failures.push(format!(
                "{path}: expected {}, the script returned {} {}",
                case.health_status, result["script"], result["error"]
            ));
            continue;
        }
        let object: Value = serde_saphyr::from_str(&read(&dir.join(path)))
            .unwrap_or_else(|e| panic!("parse {path}: {e}"));
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let expected_message = if deleting {
            &case.health_status["deletionMessage"]
        } else {
            &case.health_status["message"]
        };
        let shown = &result["health"];
        if deleting && !expected_message.is_string() {
            failures.push(format!(
                "{path}: being deleted, but no deletionMessage: Argo CD shows {shown}"
            ));
        } else if shown["status"] != case.health_status["status"]
            || shown["message"] != *expected_message
        {
            failures.push(format!(
                "{path}: Argo CD shows {shown}, expected status {} message {expected_message}",
                case.health_status["status"]
            ));
        }
    }
    assert!(
        failures.is_empty() && all_passed,
        "{} of {} cases:\n{}",
        failures.len(),
        cases.tests.len(),
        failures.join("\n")
    );

    let statuses: BTreeSet<&str> = cases
        .tests
        .iter()
        .filter_map(|c| c.health_status["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Degraded", "Healthy", "Progressing"]),
        "every status the check can give is tested"
    );
}

#[test]
fn every_testdata_file_is_a_case_and_every_case_has_its_file() {
    let cases = health_tests();
    let referenced: BTreeSet<String> = cases.tests.iter().map(|c| c.input_path.clone()).collect();
    assert_eq!(
        referenced.len(),
        cases.tests.len(),
        "an inputPath is used twice"
    );
    let present: BTreeSet<String> = std::fs::read_dir(check_dir().join("testdata"))
        .expect("read testdata/")
        .map(|entry| {
            format!(
                "testdata/{}",
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
            )
        })
        .collect();
    assert_eq!(referenced, present);
}

/// The harness really is as strict as Argo CD with a check from argocd-cm: no string library
/// (a script calling `string.format` reads Unknown), and an object being deleted shows
/// "Pending deletion" unless the script sets `deletionMessage`.
#[test]
fn the_harness_gives_scripts_what_argo_cd_gives_them() {
    let scripts = tempfile_dir();
    let format = scripts.join("format.lua");
    std::fs::write(
        &format,
        "return { status = 'Healthy', message = string.format('%d', 1) }",
    )
    .expect("write script");
    let plain = scripts.join("plain.lua");
    std::fs::write(
        &plain,
        "return { status = 'Degraded', message = 'm' .. tostring(obj.metadata.generation) }",
    )
    .expect("write script");
    let object = |deleting: bool| {
        let mut object = serde_json::json!({
            "apiVersion": "ecs.alicloud.dev/v1alpha1",
            "kind": "EcsInstance",
            "metadata": { "name": "web-1", "generation": 3, "finalizers": ["f"] },
        });
        if deleting {
            object["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z".into();
        }
        object.to_string()
    };

    let (results, _) = argolua(&["eval", format.to_str().unwrap()], &object(false));
    assert_eq!(results[0]["health"]["status"], "Unknown", "{results:?}");
    assert!(
        results[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("'format'")),
        "{results:?}"
    );
    let (results, _) = argolua(
        &["-open-libs", "eval", format.to_str().unwrap()],
        &object(false),
    );
    assert_eq!(
        results[0]["health"],
        serde_json::json!({ "status": "Healthy", "message": "1" })
    );

    let (results, _) = argolua(&["eval", plain.to_str().unwrap()], &object(false));
    assert_eq!(
        results[0]["health"],
        serde_json::json!({ "status": "Degraded", "message": "m3" })
    );
    let (results, _) = argolua(&["eval", plain.to_str().unwrap()], &object(true));
    assert_eq!(
        results[0]["health"],
        serde_json::json!({
            "status": "Progressing",
            "message": "Pending deletion; blocked by finalizers: f",
        })
    );
    std::fs::remove_dir_all(&scripts).ok();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("argocd-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Every reason of the controller's table (`src/reasons.rs`) reads in Argo CD as its kind says:
/// Ready → Healthy, progress → Progressing, needs a person → Degraded, also while deleting.
#[test]
fn every_reason_of_the_table_reads_as_its_kind_says() {
    use ecs_instance_controller::reasons::{Kind, Reason};
    let mut objects = Vec::new();
    let mut expected = Vec::new();
    for reason in Reason::ALL {
        let (flags, health) = match reason.kind() {
            Kind::Ready => ([true, false, false], "Healthy"),
            Kind::Progress => ([false, true, false], "Progressing"),
            Kind::Stalled => ([false, false, true], "Degraded"),
            Kind::Final | Kind::ReleaseState => continue,
        };
        for deleting in [false, true] {
            if deleting && reason.kind() == Kind::Ready {
                continue;
            }
            let conditions: Vec<Value> = ["Ready", "Reconciling", "Stalled"]
                .iter()
                .zip(flags)
                .map(|(type_, on)| {
                    serde_json::json!({
                        "type": type_, "status": if on { "True" } else { "False" },
                        "reason": reason.as_str(), "message": if on { "what happened. what to do" } else { "" },
                        "observedGeneration": 3, "lastTransitionTime": "2026-01-02T03:04:05Z",
                    })
                })
                .collect();
            let mut object = serde_json::json!({
                "apiVersion": "ecs.alicloud.dev/v1alpha1",
                "kind": "EcsInstance",
                "metadata": { "name": "web-1", "generation": 3,
                              "finalizers": ["ecs.alicloud.dev/release-instance"] },
                "status": { "observedGeneration": 3, "conditions": conditions },
            });
            if deleting {
                object["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z".into();
            }
            objects.push(object.to_string());
            expected.push((reason.as_str(), deleting, health));
        }
    }
    let script = check_dir().join("health.lua");
    let (results, _) = argolua(
        &["eval", script.to_str().expect("UTF-8 path")],
        &objects.join("\n"),
    );
    assert_eq!(results.len(), expected.len());
    for (result, (reason, deleting, health)) in results.iter().zip(expected) {
        assert_eq!(
            result["health"]["status"], health,
            "{reason} (deleting: {deleting}): {result}"
        );
    }
}
