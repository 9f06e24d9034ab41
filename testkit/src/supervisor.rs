//! Processes that live exactly as long as the test binary: spawned from one thread that never
//! ends, with `PR_SET_PDEATHSIG` (which follows the spawning *thread*, not the process), so they
//! get SIGKILL when the test binary exits, however it exits (their state is throw-away), and
//! nothing else is ever signalled.

use std::{
    io,
    os::unix::process::CommandExt,
    process::{Child, Command},
    sync::{Mutex, OnceLock, mpsc},
};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

/// Spawns `command` so that it ends with the test binary (or earlier, through the returned
/// handle).
pub fn spawn_for_test_binary(command: Command) -> io::Result<Child> {
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("test-process-spawner".into())
            .spawn(move || {
                // The sender lives in the static, so this loop (and thread) never ends.
                for (mut command, reply) in incoming {
                    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                    unsafe {
                        command.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the test process spawner thread");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .expect("spawner lock")
        .send((command, reply))
        .expect("spawner thread is alive");
    answer.recv().expect("spawner thread answers")
}

/// A binary of this workspace in the target profile directory of the running test executable
/// (`<profile>/deps/test-exe` → `<profile>/name`), or `$env_override` when set. Panics with how
/// to build it when missing.
pub fn workspace_binary(name: &str, env_override: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(env_override) {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let mut dir = exe
        .parent()
        .expect("the test executable lives in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing; build it first: cargo build --workspace --bins (or set {env_override})",
        binary.display()
    );
    binary
}
