# csi-cos and cos-fuse (the FUSE host runs `cos-fuse host` from this image). Build from the
# repository root:
#   docker build -f deploy/docker/csi-cos.Dockerfile -t REGISTRY/csi-cos:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
# libfuse3-dev, pkg-config: for a FUSE crate that links libfuse (harmless otherwise).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libfuse3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p csi-cos -p cos-fuse-cli

FROM debian:bookworm-slim
# fuse3: fusermount3 and libfuse3; ca-certificates: COS's TLS roots; util-linux, mount: umount.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates fuse3 mount util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/csi-cos /usr/local/bin/csi-cos
COPY --from=build /src/target/release/cos-fuse /usr/local/bin/cos-fuse
# No USER: the node plugin and the FUSE host need root (/dev/fuse, mounts in kubelet's
# directory); the controller's manifest runs it as 65532.
ENTRYPOINT ["/usr/local/bin/csi-cos"]
