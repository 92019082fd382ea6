# csi-cfs. Build from the repository root:
#   docker build -f deploy/docker/csi-cfs.Dockerfile -t REGISTRY/csi-cfs:0.1.0 .
# The same image as CFS Turbo's (for swapping the image under Tencent's cfsturbo workloads, whose
# arguments do not say --flavor=turbo):
#   docker build -f deploy/docker/csi-cfs.Dockerfile --target cfsturbo -t REGISTRY/csi-cfsturbo:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p csi-cfs

FROM debian:bookworm-slim AS runtime
# nfs-common: mount.nfs (csi-cfs runs `mount -t nfs` and `umount` as supervised child
# processes); ca-certificates: the cloud API's TLS roots (the controller).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates mount nfs-common util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/csi-cfs /usr/local/bin/csi-cfs
# No USER: the node plugin and the controller mount NFS, which takes root.
ENTRYPOINT ["/usr/local/bin/csi-cfs"]

# CFS Turbo: the same binary and image, the flavor from the environment.
FROM runtime AS cfsturbo
ENV CSI_CFS_FLAVOR=turbo

# The default target (the last stage): CFS.
FROM runtime
