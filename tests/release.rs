//! `scripts/release.sh`, the part that needs no image build (`--no-images`, seconds): the packaged
//! chart pulls the release's images by tag and digest with nothing but a registry set, deploy/'s
//! copy pins them too, the CRD file is `crds/`, `SHA256SUMS` covers and verifies every artefact, two
//! runs give the same sums, the SBOM lists the shipped crates at the versions and checksums of
//! Cargo.lock, and a VERSION that is not the repository's is refused with the reason. The full
//! run (release binaries, the OCI archives, their digests) is the release workflow's (built twice there).
//! helm is `$HELM` or what `scripts/build-helm.sh` prints, as in tests/helm_chart.rs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const CHART: &str = "ecs-instance-controller";
/// Stand-ins for the images' manifest digests, which only a full run knows.
const CONTROLLER_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const SIM_DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("release")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
    dir
}

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

/// `scripts/release.sh ARGS`, with this test's helm; its output, whatever the exit.
fn release(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(workspace_root().join("scripts/release.sh"))
        .args(args)
        .env("HELM", helm_binary())
        .current_dir(workspace_root())
        .output()
        .expect("run scripts/release.sh")
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

/// `release.sh --no-images` with both stand-in digests into a fresh directory.
fn release_no_images(name: &str) -> PathBuf {
    let out = scratch(name);
    let out_arg = out.to_str().expect("UTF-8 path");
    let output = release(&[
        "--no-images",
        "--controller-digest",
        CONTROLLER_DIGEST,
        "--sim-digest",
        SIM_DIGEST,
        VERSION,
        out_arg,
    ]);
    assert_success("scripts/release.sh --no-images", &output);
    out
}

/// One run shared by the tests that only read its output.
fn artefacts() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| release_no_images("shared"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("parse YAML ({e}):\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `helm template` of the packaged chart, helm's state under the test's scratch directory.
fn helm_template(chart: &Path, set: &str) -> Vec<Value> {
    let home = scratch("helm-home");
    let output = Command::new(helm_binary())
        .args(["template", CHART])
        .arg(chart)
        .args(["--namespace", "ecs-system", "--set", set])
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run helm");
    documents(&assert_success(
        &format!("helm template --set {set}"),
        &output,
    ))
}

/// The images of every container and init container of the Deployments, by Deployment name.
fn images(docs: &[Value]) -> BTreeMap<String, Vec<String>> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| {
            let spec = &d["spec"]["template"]["spec"];
            let images = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
                .map(|c| c["image"].as_str().expect("image").to_owned())
                .collect();
            (d["metadata"]["name"].as_str().unwrap().to_owned(), images)
        })
        .collect()
}

/// The release's chart needs only the registry the images were pushed to: the controller (and
/// the simulator, when enabled) are pulled as REGISTRY/NAME:VERSION@DIGEST, and the chart says
/// it is VERSION.
#[test]
fn packaged_chart_pulls_the_release_images_by_tag_and_digest() {
    let tgz = artefacts().join(format!("{CHART}-{VERSION}.tgz"));
    assert!(tgz.is_file(), "{} missing", tgz.display());

    let docs = helm_template(&tgz, "image.registry=registry.example");
    let controller =
        format!("registry.example/ecs-instance-controller:{VERSION}@{CONTROLLER_DIGEST}");
    assert_eq!(
        images(&docs),
        BTreeMap::from([(CHART.to_owned(), vec![controller.clone()])]),
        "the packaged chart's images"
    );
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/version"], VERSION,
            "{} {}: app.kubernetes.io/version",
            doc["kind"], doc["metadata"]["name"]
        );
    }

    let docs = helm_template(
        &tgz,
        "image.registry=registry.example,simulator.enabled=true",
    );
    let sim = format!("registry.example/ecs-sim:{VERSION}@{SIM_DIGEST}");
    let all: Vec<String> = images(&docs).into_values().flatten().collect();
    assert!(
        all.contains(&controller) && all.contains(&sim),
        "with simulator.enabled the images are {all:?}, expected {controller} and {sim}"
    );
}

/// deploy/ as released: base/ pins the controller by tag and digest for every overlay, the
/// simulator component pins the simulator, and the test-only e2e overlays are left out.
#[test]
fn deploy_archive_pins_the_images() {
    let tgz = artefacts().join(format!("{CHART}-deploy-{VERSION}.tar.gz"));
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&tgz)
        .output()
        .expect("run tar");
    let list = assert_success("tar -tzf", &list);
    assert!(
        list.lines().any(|l| l == "deploy/kustomization.yaml"),
        "{list}"
    );
    assert!(
        !list.contains("overlays/e2e"),
        "test-only overlays released:\n{list}"
    );

    let member = |path: &str| -> Value {
        let output = Command::new("tar")
            .arg("-xzOf")
            .arg(&tgz)
            .arg(path)
            .output()
            .expect("run tar");
        documents(&assert_success(&format!("tar -xzOf {path}"), &output)).remove(0)
    };
    let pin = |image: &str, digest: &str| serde_json::json!([{ "name": image, "newTag": VERSION, "digest": digest }]);
    assert_eq!(
        member("deploy/base/kustomization.yaml")["images"],
        pin("ecs-instance-controller", CONTROLLER_DIGEST)
    );
    assert_eq!(
        member("deploy/components/simulator/kustomization.yaml")["images"],
        pin("ecs-sim", SIM_DIGEST)
    );
}

/// The CRD file is every document of crds/, unchanged.
#[test]
fn crds_file_is_the_crds_directory() {
    let released = documents(&read(&artefacts().join(format!("{CHART}-crds.yaml"))));
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crds"))
        .expect("read crds/")
        .map(|e| e.expect("crds/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let expected: Vec<Value> = files.iter().flat_map(|f| documents(&read(f))).collect();
    assert!(!expected.is_empty());
    assert_eq!(released, expected);
}

/// SHA256SUMS names every other file of the release directory, and `sha256sum --check` agrees.
#[test]
fn sums_cover_and_verify_every_artefact() {
    let out = artefacts();
    let sums = read(&out.join("SHA256SUMS"));
    let listed: Vec<&str> = sums
        .lines()
        .map(|l| {
            let (hash, name) = l.split_once("  ").unwrap_or_else(|| panic!("line {l:?}"));
            assert!(
                hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "line {l:?}"
            );
            name
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(out)
        .expect("read the release directory")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(|n| n != "SHA256SUMS")
        .collect();
    files.sort();
    assert_eq!(
        listed, files,
        "SHA256SUMS lists exactly the artefacts, sorted"
    );
    for expected in [
        format!("{CHART}-{VERSION}.tgz"),
        format!("{CHART}-crds.yaml"),
        format!("{CHART}-deploy-{VERSION}.tar.gz"),
        format!("{CHART}-{VERSION}.spdx.json"),
    ] {
        assert!(
            files.contains(&expected),
            "{expected} missing from {files:?}"
        );
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(out)
        .output()
        .expect("run sha256sum");
    assert_success("sha256sum --check --strict SHA256SUMS", &check);
}

/// Two runs of the same commit give byte-identical artefacts (helm package stamps the time of
/// packaging; the script repacks with the commit's time).
#[test]
fn two_runs_give_the_same_sums() {
    let again = release_no_images("again");
    assert_eq!(
        read(&again.join("SHA256SUMS")),
        read(&artefacts().join("SHA256SUMS")),
        "a second run of scripts/release.sh differs"
    );
}

/// Cargo.lock's packages: (name, version) → checksum (none for the workspace's own crates).
fn cargo_lock() -> BTreeMap<(String, String), Option<String>> {
    let lock = read(&workspace_root().join("Cargo.lock"));
    let mut packages = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{key} = \""))
                    .and_then(|v| v.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        packages.insert(
            (
                field("name").expect("name"),
                field("version").expect("version"),
            ),
            field("checksum"),
        );
    }
    packages
}

/// The SBOM (SPDX 2.3) lists the crates that go into the two binaries: the shipped workspace
/// crates, not the test-only ones, and every dependency at its Cargo.lock version with its
/// Cargo.lock checksum (kube and tokio among them), and describes the two binaries' crates.
#[test]
fn sbom_lists_the_shipped_crates_as_cargo_lock_pins_them() {
    let sbom: Value = serde_json::from_str(&read(
        &artefacts().join(format!("{CHART}-{VERSION}.spdx.json")),
    ))
    .expect("the SBOM is JSON");
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["dataLicense"], "CC0-1.0");
    let lock = cargo_lock();
    let packages = sbom["packages"].as_array().expect("packages");
    let mut by_name: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in packages {
        let (name, version) = (
            p["name"].as_str().unwrap(),
            p["versionInfo"].as_str().unwrap(),
        );
        let checksum = lock
            .get(&(name.to_owned(), version.to_owned()))
            .unwrap_or_else(|| panic!("{name} {version} is not in Cargo.lock"));
        let sbom_checksum = p["checksums"][0]["checksumValue"].as_str();
        assert_eq!(
            sbom_checksum,
            checksum.as_deref(),
            "{name} {version}: checksum"
        );
        assert_eq!(
            p["externalRefs"][0]["referenceLocator"],
            format!("pkg:cargo/{name}@{version}")
        );
        by_name.entry(name).or_default().push(p);
    }
    for shipped in ["ecs-instance-controller", "ecs-client", "ecs-sim"] {
        let entry = by_name
            .get(shipped)
            .unwrap_or_else(|| panic!("{shipped} missing"));
        assert_eq!(entry[0]["versionInfo"], VERSION, "{shipped}");
    }
    for test_only in ["testkit", "simulation"] {
        assert!(
            !by_name.contains_key(test_only),
            "{test_only} is test-only, not shipped"
        );
    }
    for dependency in ["kube", "tokio", "kube-lease-manager", "axum"] {
        let entry = by_name
            .get(dependency)
            .unwrap_or_else(|| panic!("{dependency} missing"));
        let locked: Vec<&String> = lock
            .keys()
            .filter(|(n, _)| n == dependency)
            .map(|(_, v)| v)
            .collect();
        assert!(
            entry
                .iter()
                .all(|p| locked.iter().any(|v| p["versionInfo"] == v.as_str())),
            "{dependency}: SBOM {:?}, Cargo.lock {locked:?}",
            entry.iter().map(|p| &p["versionInfo"]).collect::<Vec<_>>()
        );
    }
    let relationships = sbom["relationships"].as_array().expect("relationships");
    let id = |name: &str| by_name[name][0]["SPDXID"].as_str().unwrap().to_owned();
    let has = |a: &str, kind: &str, b: &str| {
        relationships.iter().any(|r| {
            r["spdxElementId"] == a && r["relationshipType"] == kind && r["relatedSpdxElement"] == b
        })
    };
    for root in ["ecs-instance-controller", "ecs-sim"] {
        assert!(
            has("SPDXRef-DOCUMENT", "DESCRIBES", &id(root)),
            "{root} described"
        );
    }
    assert!(has(
        &id("ecs-instance-controller"),
        "DEPENDS_ON",
        &id("kube")
    ));
    assert!(has(
        &id("ecs-instance-controller"),
        "DEPENDS_ON",
        &id("ecs-client")
    ));
}

/// A VERSION that is not the one in Cargo.toml (and the chart) is refused before anything is
/// built or written, saying which file holds which version; so are a leading v, a non-semver
/// version and build metadata.
#[test]
fn a_version_that_is_not_the_repositorys_is_refused() {
    let out = scratch("refused");
    let out_arg = out.to_str().expect("UTF-8 path");
    let refused = |version: &str, expected: &[&str]| {
        let output = release(&["--no-images", version, out_arg]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{version}: exit\n{stderr}");
        for e in expected {
            assert!(
                stderr.contains(e),
                "{version}: stderr lacks {e:?}:\n{stderr}"
            );
        }
        assert!(!out.exists(), "{version}: {} was written", out.display());
    };
    refused(
        "99.0.0",
        &[
            "VERSION 99.0.0 does not match the repository",
            &format!("Cargo.toml [package] version is {VERSION}"),
            &format!("Chart.yaml appVersion is {VERSION}"),
            "CHANGELOG.md has no section '## [99.0.0]",
            "this script stamps nothing",
        ],
    );
    refused(&format!("v{VERSION}"), &["without the leading v"]);
    refused("0.1", &["is not a semantic version"]);
    refused(&format!("{VERSION}+build.1"), &["build metadata"]);
}

/// The packaged chart installs on a real API server (its CRDs included) with nothing but the
/// registry changed, and the Deployment it creates pulls the release's image by digest.
#[test]
fn packaged_chart_installs_with_only_the_registry_set() {
    let plane = testkit::control_plane();
    let tgz = artefacts().join(format!("{CHART}-{VERSION}.tgz"));
    let home = scratch("helm-install-home");
    let helm = |args: &[&str]| {
        Command::new(helm_binary())
            .args(args)
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .expect("run helm")
    };
    let tgz_arg = tgz.to_str().expect("UTF-8 path");
    assert_success(
        "helm install (packaged chart)",
        &helm(&[
            "install",
            "ecs-instance-controller",
            tgz_arg,
            "--namespace",
            "ecs-system",
            "--create-namespace",
            "--set",
            "image.registry=registry.example",
        ]),
    );
    let manifest = assert_success(
        "helm get manifest",
        &helm(&[
            "get",
            "manifest",
            "ecs-instance-controller",
            "--namespace",
            "ecs-system",
        ]),
    );
    let controller =
        format!("registry.example/ecs-instance-controller:{VERSION}@{CONTROLLER_DIGEST}");
    assert_eq!(
        images(&documents(&manifest)),
        BTreeMap::from([(CHART.to_owned(), vec![controller])])
    );
    // The CRD came with it and is served.
    let crd = Command::new(plane.kubectl())
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(["get", "crd", "ecsinstances.ecs.alicloud.dev", "-o", "name"])
        .output()
        .expect("run kubectl");
    assert_success("kubectl get crd", &crd);
}
