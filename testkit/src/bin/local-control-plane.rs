//! The test control plane (etcd + kube-apiserver on loopback, CRDs installed) for the local run:
//! prints the kubeconfig path, then runs until SIGINT, SIGTERM or SIGHUP. Then (also when
//! interrupted during start-up) it kills etcd and kube-apiserver and removes the state directory
//! (`ecs-testenv-<pid>` in the temporary directory) before it exits.

use std::{io::Write, process::ExitCode};

use tokio::signal::unix::{Signal, SignalKind, signal};

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async {
        // Before anything starts: from here on these signals end the wait below instead of the
        // process (and the processes started later inherit the default action, not "ignored").
        let mut signals = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .map(|kind| signal(kind).expect("install a signal handler"));
        let startup = tokio::task::spawn_blocking(testkit::control_plane);
        tokio::select! {
            started = startup => match started {
                Ok(plane) => {
                    let mut stdout = std::io::stdout();
                    let printed = writeln!(stdout, "{}", plane.kubeconfig.display())
                        .and_then(|()| stdout.flush());
                    if let Err(e) = printed {
                        eprintln!("local-control-plane: print the kubeconfig path: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                // The panic message (the reason and the component's log tail) is printed.
                Err(_) => return ExitCode::FAILURE,
            },
            () = any(&mut signals) => {
                eprintln!("local-control-plane: interrupted during start-up");
                return ExitCode::FAILURE;
            }
        }
        any(&mut signals).await;
        eprintln!("local-control-plane: stopping");
        ExitCode::SUCCESS
    });
    // A start-up still running on the blocking pool is not waited for: `shut_down` stops what it
    // started and makes it fail.
    runtime.shutdown_background();
    testkit::control_plane::shut_down();
    code
}

async fn any(signals: &mut [Signal; 3]) {
    let [interrupt, terminate, hangup] = signals;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        _ = hangup.recv() => {}
    }
}
