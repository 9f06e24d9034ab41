//! The real upstream tools the tests ask for verdicts (kstatus, an Argo CD Lua runtime,
//! promtool), built by the project's own scripts into the cache outside the repository.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// The path in `$env` (set by `scripts/test.sh`), else whatever `scripts/<script>` prints (it
/// builds once, then is a no-op). Panics with the reason when the script fails: the tests that
/// need these tools never skip.
pub fn built_by(env: &str, script: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}): the tool is required (it needs Go and the Go module proxy)",
        script.display(),
        output.status
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Runs `binary` with `args`, `input` on its standard input; its output, whatever the exit.
pub fn run_with_input(binary: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("write the input of {}: {e}", binary.display()));
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {}: {e}", binary.display()))
}
