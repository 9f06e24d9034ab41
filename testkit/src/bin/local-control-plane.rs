//! The test control plane (etcd + kube-apiserver on loopback, CRDs installed) for the local run:
//! prints the kubeconfig path, then runs until interrupted. The control plane ends with it.

fn main() {
    let plane = testkit::control_plane();
    println!("{}", plane.kubeconfig.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    });
}
