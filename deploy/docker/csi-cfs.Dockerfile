# csi-cfs. Build from the repository root:
#   docker build -f deploy/docker/csi-cfs.Dockerfile -t REGISTRY/csi-cfs:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p csi-cfs

FROM debian:bookworm-slim
# nfs-common: mount.nfs (csi-cfs runs `mount -t nfs` and `umount` as supervised child
# processes); ca-certificates: the cloud API's TLS roots (the controller).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates mount nfs-common util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/csi-cfs /usr/local/bin/csi-cfs
# No USER: the node plugin and the controller mount NFS, which takes root.
ENTRYPOINT ["/usr/local/bin/csi-cfs"]
