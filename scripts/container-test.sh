#!/usr/bin/env bash
# Builds the Dockerfile with podman on this machine (no Docker engine here), runs the image on
# loopback, checks /healthz, signup and login against it, and stops it. Follows
# ../shared/CONTAINERS.md: local base images from debootstrap, runc, capped ulimits, the
# machine's Rust toolchain and CA certificates in the builder.
#
# Exit status: non-zero when the image fails to build or run. When the container tools cannot
# be installed at all, it says so loudly and exits 0 (SKIPPED), so CI records it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=${EDGE_IDP_PODMAN_DIR:-/var/tmp/edge-idp-podman}
IMAGE=localhost/edge-idp:test
NAME=edge-idp-test-$$
log() { printf '[container-test] %s\n' "$*"; }

need=()
for t in podman buildah debootstrap runc; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc) >/dev/null 2>&1; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "SKIPPED container test: podman/buildah/debootstrap/runc cannot be installed"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    exit 0
  fi
fi

mkdir -p "$WORK/storage" "$WORK/run"
HARD_NOFILE=$(ulimit -Hn)
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$HARD_NOFILE:$HARD_NOFILE", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf"

BASE=docker.io/library/debian:bookworm-slim
BUILDER=docker.io/library/rust:1-bookworm
if ! podman image exists "$BASE"; then
  log "making $BASE with debootstrap"
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  ROOTFS="$WORK/rootfs"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >/dev/null
  rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*
  tar -C "$ROOTFS" --numeric-owner -c . | podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$ROOTFS"
fi
# The stand-in for the official Rust image: what the Dockerfile's build needs of it (a C
# compiler, and OpenSSL's headers and pkg-config for webauthn-rs). Bump the revision when that
# list changes, so that a builder made earlier on this machine is made again.
BUILDER_REV=2
if ! podman image exists "$BUILDER" \
  || [ "$(podman image inspect --format '{{ index .Labels "edge-idp.builder" }}' "$BUILDER")" != "$BUILDER_REV" ]; then
  log "making $BUILDER from $BASE, this machine's toolchain and CA certificates"
  CTX="$WORK/builder-ctx"
  rm -rf "$CTX" && mkdir -p "$CTX/certs"
  cp -a "$(rustc --print sysroot)" "$CTX/toolchain"
  # The toolchain folder holds the real cargo; the one on PATH may be rustup's proxy.
  [ -x "$CTX/toolchain/bin/cargo" ] || cp "$(command -v cargo)" "$CTX/toolchain/bin/cargo"
  cp /usr/local/share/ca-certificates/*.crt "$CTX/certs/" 2>/dev/null || true
  cat > "$CTX/Containerfile" <<CF
FROM docker.io/library/debian:bookworm-slim
LABEL edge-idp.builder=$BUILDER_REV
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
    libssl-dev pkg-config ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rust/
ENV PATH=/usr/local/rust/bin:\$PATH CARGO_HOME=/usr/local/cargo
CF
  podman build --pull=never -t "$BUILDER" -f "$CTX/Containerfile" "$CTX"
  rm -rf "$CTX"
fi

log "building $IMAGE"
start=$(date +%s)
podman build --pull=never -t "$IMAGE" "$REPO"
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "image built in $(( $(date +%s) - start )) s; size $SIZE bytes"
# The runtime image is the binary and what it links: keep it small enough to ship to every
# region quickly.
[ "$SIZE" -le 40000000 ] || { log "FAILED: image is $SIZE bytes, over 40 MB"; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KEY=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
cleanup() { podman rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
podman run -d --init --name "$NAME" -p "127.0.0.1:$PORT:8080" -e "MFA_ENCRYPTION_KEY=$KEY" "$IMAGE" >/dev/null
BASEURL="http://127.0.0.1:$PORT"
for i in $(seq 1 100); do
  curl -fsS "$BASEURL/healthz" >/dev/null 2>&1 && break
  [ "$i" = 100 ] && { podman logs "$NAME" | tail -20; log "FAILED: /healthz never answered"; exit 1; }
  sleep 0.2
done
log "healthz: $(curl -fsS "$BASEURL/healthz")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASEURL/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"container@example.com","password":"correct horse battery staple"}')
[ "$code" = 201 ] || { log "FAILED: signup answered $code"; exit 1; }
body=$(curl -fsS -X POST "$BASEURL/auth/login" -H 'content-type: application/json' \
  -d '{"email":"container@example.com","password":"correct horse battery staple"}')
echo "$body" | grep -q '"access_token"' || { log "FAILED: login answered $body"; exit 1; }
podman exec "$NAME" /usr/local/bin/edge-idp healthcheck || { log "FAILED: in-container healthcheck"; exit 1; }
# No shell or `id` in the image: ask podman which user the process runs as.
uid=$(podman top "$NAME" user | tail -n +2 | head -1 | tr -d ' ')
[ -n "$uid" ] && [ "$uid" != 0 ] && [ "$uid" != root ] || { log "FAILED: runs as '$uid'"; exit 1; }
podman stop -t 20 "$NAME" >/dev/null
log "PASSED: image builds, runs as non-root, answers healthz, signup and login, stops on SIGTERM"
