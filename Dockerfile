# edge-idp container image.
#
# Two stages: a Debian builder with the Rust toolchain, and a runtime from scratch that holds
# the binary with the libraries it links (from the same Debian release, so glibc matches), runs
# as a non-root user, keeps its data in a volume and checks its own health with
# `edge-idp healthcheck` (no shell or curl in the image).
# Build with `scripts/container-test.sh` on machines without a Docker engine (podman), or
# `docker build .` anywhere else.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm

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

# The runtime's whole file system, gathered here: the binary, the shared libraries it links
# (glibc, libgcc and OpenSSL, as ldd lists them), CA certificates for a TLS primary or Redis, a passwd
# entry for the unprivileged user, and its data folder. Nothing else: no shell, no package
# manager, so the image is the binary plus a few MB.
RUN set -eu; R=/rootfs; \
    mkdir -p $R/usr/local/bin $R/etc/ssl/certs $R/tmp $R/var/lib/edge-idp/data; \
    cp target/release/edge-idp $R/usr/local/bin/edge-idp; \
    for lib in $(ldd target/release/edge-idp | grep -o '/[^ ]*'); do cp -L --parents "$lib" $R; done; \
    cp /etc/ssl/certs/ca-certificates.crt $R/etc/ssl/certs/; \
    echo 'edge-idp:x:10001:10001:edge-idp:/var/lib/edge-idp:/nonexistent' > $R/etc/passwd; \
    echo 'edge-idp:x:10001:' > $R/etc/group; \
    chmod 1777 $R/tmp

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=10001:10001 /rootfs/var/lib/edge-idp/ /var/lib/edge-idp/
USER 10001:10001
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
