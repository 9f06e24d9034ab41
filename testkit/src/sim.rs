//! The ECS simulator as a child process (owned by the simulator work).
