//! EcsInstance controller.
