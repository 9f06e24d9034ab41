# The EcsInstance controller image:
#   docker build -t ecs-instance-controller:dev .
# A second, test-only target packs the ECS simulator for scripts/e2e-kind.sh:
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

# Test-only: the simulator, for the kind end-to-end run (never deployed with the controller).
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
