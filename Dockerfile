# syntax=docker/dockerfile:1
# One image with every heist binary: heist-oauth, heist-tools, heist-memory, heist-audit,
# orchestrator, heist-dev-certs and heist-probe (the gRPC health check the compose file runs).
# deploy/compose.yaml and deploy/k8s/ choose the binary with the container's command.
#
#   docker build -t heist:dev .
#
# Nothing secret is in it: the OAuth signing key, the TLS material and the client registry are
# mounted at run time (see the README, "Deploying").

# --- build: the oldest toolchain every locked dependency admits (rusqlite 0.43 needs 1.89;
# tests/e2e/deploy_manifests.rs checks this against Cargo.lock) ----------------------------
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/heist-oauth target/release/heist-tools target/release/heist-memory \
       target/release/heist-audit target/release/orchestrator target/release/heist-dev-certs \
       target/release/heist-probe /out/

# --- run: slim Debian, a non-root user --------------------------------------------------------
FROM debian:bookworm-slim AS run
RUN groupadd --system --gid 10001 heist \
 && useradd --system --uid 10001 --gid heist --home-dir /var/lib/heist --shell /usr/sbin/nologin heist \
 && mkdir -p /var/lib/heist /etc/heist/certs /etc/heist/config \
 && chown heist:heist /var/lib/heist /etc/heist/certs
COPY --from=build /out/ /usr/local/bin/
# The file reader's documents (read-only data, not configuration).
COPY services/tools/documents /usr/share/heist/documents
ENV HEIST_DOCUMENTS_DIR=/usr/share/heist/documents \
    HEIST_LOG_FORMAT=json \
    HEIST_SPOOL=/var/lib/heist/audit.spool
USER 10001:10001
WORKDIR /var/lib/heist
# Main gRPC port (8001 OAuth, 8002 tools, 8005 Memory, 8006 Audit), plaintext health 8090,
# Prometheus /metrics 9464.
EXPOSE 8001 8002 8005 8006 8090 9464
CMD ["heist-oauth", "--help"]
