//! The real GitOps status tools the tests ask for verdicts: kstatus and an Argo CD Lua runtime,
//! built by `scripts/build-gitops-check.sh`.

use std::{path::PathBuf, sync::OnceLock};

/// A checker binary (`kstatus`, `argolua`) from `$GITOPS_CHECK`, else from the directory
/// `scripts/build-gitops-check.sh` prints. Panics when it is not there: never skips.
pub fn checker(tool: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| crate::tools::built_by("GITOPS_CHECK", "build-gitops-check.sh"));
    let binary = dir.join(tool);
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/build-gitops-check.sh (or unset GITOPS_CHECK)",
        binary.display()
    );
    binary
}
