//! `argolua` (the Argo CD Lua harness `tests/argocd_health.rs` and `tests/kstatus.rs` ask) is
//! still what the Argo CD release it pins does: `argolua upstream-check` reads that release's
//! sources (the module zips `scripts/build-gitops-check.sh` has the go command download, recorded
//! in `argocd-sources.json` next to the binaries), runs every case of Argo CD's own built-in health
//! checks through the harness, compares the fingerprints of the Argo CD functions the harness
//! reproduces, and the gopher-lua and gopher-json versions with Argo CD's go.mod. See
//! docs/gitops.md, "How the harness is kept honest".

use std::path::{Path, PathBuf};

use serde_json::Value;

fn argolua() -> PathBuf {
    testkit::gitops::checker("argolua")
}

/// The Argo CD release argolua pins (`argocdVersion` in its source, the one place it is written).
fn pinned_version() -> String {
    let output = testkit::tools::run_with_input(&argolua(), &["version"], b"");
    assert!(
        output.status.success(),
        "argolua version: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn argolua_still_does_what_the_pinned_argo_cd_does() {
    let binary = argolua();
    let sources = binary
        .parent()
        .expect("the checker directory")
        .join("argocd-sources.json");
    assert!(
        sources.is_file(),
        "{} is missing: scripts/build-gitops-check.sh writes it when it downloads Argo CD's sources \
         (run it; it needs the Go module proxy the first time)",
        sources.display()
    );
    let output = testkit::tools::run_with_input(
        &binary,
        &["upstream-check", sources.to_str().expect("UTF-8 path")],
        b"",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "argolua upstream-check ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary from {report}"));
    let problems = summary["problems"].as_array().expect("problems");
    assert!(
        output.status.success() && problems.is_empty(),
        "the harness no longer mirrors Argo CD {} ({} problems; to bump Argo CD see docs/gitops.md):\n{report}",
        summary["argocdVersion"],
        problems.len()
    );

    assert_eq!(summary["argocdVersion"], pinned_version().as_str());
    let count = |field: &str| {
        summary["builtinChecks"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("builtinChecks.{field} in {summary}"))
    };
    assert!(
        count("directories") >= 100 && count("cases") >= 500,
        "too few of Argo CD's built-in checks found: {report}"
    );
    assert_eq!(
        count("passed") + count("allowListed"),
        count("cases"),
        "{report}"
    );
    assert!(
        summary["fingerprints"]["checked"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(summary["fingerprints"]["changed"], 0, "{report}");
}

/// Where the documentation and the tests name the Argo CD release the harness reproduces ("Argo
/// CD vX.Y.Z"), it is the pinned one: bumping `argocdVersion` fails here until they say so.
#[test]
fn the_documentation_names_the_pinned_release() {
    let pinned = pinned_version();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        root.join("README.md"),
        root.join("tools/gitops-check/argolua/main.go"),
        root.join("tools/gitops-check/argolua/upstream.go"),
        root.join("scripts/build-gitops-check.sh"),
    ];
    for dir in ["docs", "tests"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read a directory") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "md" || e == "rs") {
                files.push(path);
            }
        }
    }
    let mut stale = Vec::new();
    let mut named = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        // Joined lines (without comment markers), so a name broken across lines counts.
        let text = text
            .split_whitespace()
            .filter(|word| !matches!(*word, "//" | "//!" | "///" | "#"))
            .collect::<Vec<_>>()
            .join(" ");
        for (at, _) in text.match_indices("Argo CD v") {
            let version: String = text[at + "Argo CD ".len()..]
                .chars()
                .take_while(|c| *c == 'v' || *c == '.' || c.is_ascii_digit())
                .collect();
            let version = version.trim_end_matches('.');
            if version.len() < 2 {
                continue;
            }
            named += 1;
            if version != pinned {
                stale.push(format!("{}: Argo CD {version}", file.display()));
            }
        }
    }
    assert!(
        named > 0,
        "no file names the Argo CD release: is the search still right?"
    );
    assert!(
        stale.is_empty(),
        "argolua pins Argo CD {pinned}, but these name another release:\n{}",
        stale.join("\n")
    );
}
