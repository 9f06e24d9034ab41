# The EcsInstance controller image:
#   docker build -t ecs-instance-controller:dev .
# A second, test-only target packs the ECS simulator (scripts/e2e-kind.sh, and the test double
# of docs/testing-your-setup.md: the chart's simulator.enabled, deploy/components/simulator):
#   docker build --target ecs-sim -t ecs-sim:dev .
# BuildKit builds only the stages the chosen target needs.

FROM rust:1.95-bookworm AS source
WORKDIR /src
COPY . .

FROM source AS build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git/db \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ecs-instance-controller \
    && install -D target/release/ecs-instance-controller /out/ecs-instance-controller

FROM source AS build-sim
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git/db \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ecs-sim --bin ecs-sim \
    && install -D target/release/ecs-sim /out/ecs-sim

# Test-only: the simulator, for end-to-end tests (a sidecar of the e2e overlays, or a Service
# next to the controller with --listen=0.0.0.0:9100 --allow-non-loopback); never for production.
FROM debian:bookworm-slim AS ecs-sim
COPY --from=build-sim /out/ecs-sim /usr/local/bin/ecs-sim
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ecs-sim"]

# The controller (default target). Same Debian release as the builder, so the glibc matches;
# CA certificates for HTTPS to the ECS endpoints; a numeric non-root user (runAsNonRoot can
# verify it).
FROM debian:bookworm-slim
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ecs-instance-controller /usr/local/bin/ecs-instance-controller
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/ecs-instance-controller"]
