# edge-idp container image.
#
# Two stages on the same Debian release (glibc matches): a builder with the Rust toolchain, and
# a slim runtime that holds the binary alone, runs as a non-root user, keeps its data in a
# volume and checks its own health with `edge-idp healthcheck` (no curl in the image).
# Build with `scripts/container-test.sh` on machines without a Docker engine (podman), or
# `docker build .` anywhere else.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the manifests or the lock change.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir -p src actors/src benches bench/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs actors/src/lib.rs \
    && echo 'fn main() {}' > benches/ratelimit.rs && echo 'fn main() {}' > bench/src/main.rs \
    && cargo build --release --locked -p edge-idp --bin edge-idp \
    && rm -rf src actors/src benches bench/src
COPY . .
# Make sure cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs actors/src/lib.rs \
    && cargo build --release --locked -p edge-idp --bin edge-idp \
    && strip target/release/edge-idp

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/edge-idp --create-home edge-idp \
    && mkdir -p /var/lib/edge-idp/data && chown edge-idp:edge-idp /var/lib/edge-idp/data
COPY --from=build /src/target/release/edge-idp /usr/local/bin/edge-idp
USER edge-idp
WORKDIR /var/lib/edge-idp
ENV LISTEN_ADDR=0.0.0.0:8080 \
    DATA_DIR=/var/lib/edge-idp/data \
    LOG_FORMAT=json
VOLUME ["/var/lib/edge-idp/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/edge-idp", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/edge-idp"]
CMD ["serve"]
