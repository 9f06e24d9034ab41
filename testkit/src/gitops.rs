//! The real GitOps status tools the tests ask for verdicts: kstatus and an Argo CD Lua runtime,
//! built by `scripts/build-gitops-check.sh` into the cache outside the repository.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// A checker binary (`kstatus`, `argolua`) from `$GITOPS_CHECK` (set by `scripts/test.sh`),
/// else from whatever `scripts/build-gitops-check.sh` prints (it builds once, then is a no-op).
/// Panics when the checkers are not there: the GitOps tests never skip.
pub fn checker(tool: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| match std::env::var_os("GITOPS_CHECK") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-gitops-check.sh");
            let output = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
            assert!(
                output.status.success(),
                "{} failed ({}): the GitOps checkers are required",
                script.display(),
                output.status
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    });
    let binary = dir.join(tool);
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/build-gitops-check.sh (or unset GITOPS_CHECK)",
        binary.display()
    );
    binary
}
