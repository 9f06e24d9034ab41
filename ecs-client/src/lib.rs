//! Alibaba Cloud ECS OpenAPI client.
