//! Test support shared by the workspace's integration tests: a real etcd + kube-apiserver on
//! loopback (one per test binary) and the ECS simulator as a child process.

pub mod control_plane;
pub mod sim;

pub use control_plane::{ControlPlane, TestNamespace, control_plane, test_namespace};
