//! Test support shared by the workspace's integration tests: a real etcd + kube-apiserver on
//! loopback (one per test binary, its API server stoppable and restartable for outage tests; with
//! kube-controller-manager's namespace controller and garbage collector on request) and the ECS
//! simulator as a child process.

pub mod control_plane;
pub mod gitops;
pub mod programs;
pub mod sim;
pub mod supervisor;
pub mod tools;

pub use control_plane::{
    ControlPlane, ControllerManager, TestNamespace, control_plane, controller_manager,
    create_namespace, delete_namespace, free_ports, restart_apiserver, start_apiserver,
    stop_apiserver, test_namespace, wait_namespace_gone,
};

/// A plain HTTP client for talking to local test servers. The workspace builds reqwest with
/// `rustls-no-provider` (the controller passes ring to its own client explicitly), so a client
/// built with defaults needs a process-wide crypto provider: install ring once.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("an HTTP client builds")
}
