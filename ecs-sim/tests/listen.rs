//! The listen address: loopback by default; a non-loopback address (a Pod behind a Service) only
//! with `--allow-non-loopback`, announced by a warning, since the admin API is unauthenticated.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn a_non_loopback_address_is_refused_without_the_flag() {
    for address in ["0.0.0.0:0", "[::]:0"] {
        let output = Command::new(testkit::sim::sim_binary())
            .args(["--listen", address])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("ecs-sim runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{address}: {stderr}");
        assert!(
            stderr.contains("is not a loopback address") && stderr.contains("--allow-non-loopback"),
            "{address}: the refusal names the flag: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{address}: never reported ready");
    }
}

#[tokio::test]
async fn the_flag_allows_a_non_loopback_address_with_a_warning() {
    let mut child = Command::new(testkit::sim::sim_binary())
        .args(["--listen", "0.0.0.0:0", "--allow-non-loopback"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ecs-sim starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut line))
        .await
        .expect("ready within 20 s")
        .expect("read the ready line");
    let port = line
        .trim()
        .strip_prefix("ecs-sim listening on http://0.0.0.0:")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    assert_ne!(port, "0", "a free port was picked");
    // Reachable (here through loopback, which 0.0.0.0 includes).
    let health = testkit::http_client()
        .get(format!("http://127.0.0.1:{port}/_sim/health"))
        .send()
        .await
        .expect("the health endpoint answers");
    assert_eq!(health.status(), 200);
    child.kill().await.expect("kill ecs-sim");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    assert!(
        stderr.contains("WARNING") && stderr.contains("unauthenticated admin API"),
        "the start-up warns: {stderr}"
    );
}

#[tokio::test]
async fn the_default_stays_loopback() {
    // Not started on it (the port may be taken on this machine): --help shows the default.
    let output = Command::new(testkit::sim::sim_binary())
        .arg("--help")
        .output()
        .await
        .expect("ecs-sim runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[default: 127.0.0.1:9100]"), "{help}");
    assert!(help.contains("--allow-non-loopback"), "{help}");
}
