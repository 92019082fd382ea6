# csi-cbs. Build from the repository root:
#   docker build -f deploy/docker/csi-cbs.Dockerfile -t REGISTRY/csi-cbs:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p csi-cbs

FROM debian:bookworm-slim
# e2fsprogs, xfsprogs: mkfs, e2fsck, resize2fs, xfs_growfs; util-linux, mount: blkid, mount,
# umount; ca-certificates: the cloud API's TLS roots (the controller).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates e2fsprogs mount util-linux xfsprogs \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/csi-cbs /usr/local/bin/csi-cbs
# No USER: the node plugin must be root (mount, mkfs, block devices); the controller's manifest
# runs it as 65532.
ENTRYPOINT ["/usr/local/bin/csi-cbs"]
