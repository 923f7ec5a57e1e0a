# syntax=docker/dockerfile:1
# The tmc image: one static-ish binary on Debian bookworm's minimal userland.
#   docker build -t REGISTRY/tmc:TAG .
# Without a Docker engine, scripts/image.sh builds the same runtime image
# (same Debian release, same libraries, user and paths) from a binary built
# on the host. docs/deploy.md, "Image".

# ---- build: RocksDB's C++ needs a C++ compiler (in rust:bookworm) and
# libclang for its bindings; raft-rs needs protoc.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      protobuf-compiler libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The registry and target directory as BuildKit caches: a rebuild after a
# source change skips RocksDB (about half an hour of C++ on two cores).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -m 0755 target/release/tmc /tmc

# ---- runtime: what `ldd tmc` names (libc, libm, libgcc_s, libstdc++; all
# but libstdc++ are in any Debian) and CA certificates (a member cluster's
# kubeconfig without certificate-authority-data is checked against the
# system's roots).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 tmc \
 && useradd --uid 65532 --gid 65532 --home-dir /var/lib/tmc --no-create-home \
      --shell /usr/sbin/nologin tmc \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/tmc
COPY --from=build /tmc /usr/local/bin/tmc
USER 65532:65532
WORKDIR /var/lib/tmc
# API (HTTPS), raft, internal KV/membership (mutual TLS), metrics (HTTP).
EXPOSE 6443 7001 7002 9090
ENTRYPOINT ["/usr/local/bin/tmc"]
