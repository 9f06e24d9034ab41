//! Test support shared by the workspace's integration tests.
pub mod sim;
