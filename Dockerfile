# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, run from a small Debian image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin token-broker

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/token-broker --create-home broker
COPY --from=build /src/target/release/token-broker /usr/local/bin/token-broker
COPY config /etc/token-broker
WORKDIR /var/lib/token-broker
USER broker
ENV TOKEN_BROKER_CONFIG_DIR=/etc/token-broker \
    TOKEN_BROKER__SERVER__HOST=0.0.0.0 \
    TOKEN_BROKER__SERVER__PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/token-broker"]
CMD ["serve"]
