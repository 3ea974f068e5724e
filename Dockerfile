# edge-idp container image (first version; the deployment issue completes it).
# Builder and runtime share a Debian release so glibc matches.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the manifests change.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
RUN mkdir -p src actors/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs actors/src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src actors/src
COPY . .
RUN touch src/main.rs src/lib.rs actors/src/lib.rs && cargo build --release --locked --bin edge-idp

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /var/lib/edge-idp --create-home edge-idp
COPY --from=build /src/target/release/edge-idp /usr/local/bin/edge-idp
USER edge-idp
WORKDIR /var/lib/edge-idp
ENV LISTEN_ADDR=0.0.0.0:8080 DATA_DIR=/var/lib/edge-idp/data
VOLUME ["/var/lib/edge-idp/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/edge-idp", "--version"]
ENTRYPOINT ["/usr/local/bin/edge-idp"]
CMD ["serve"]
