# The sfprocessor container image, with upstream's layout and variables
# (sysflowtelemetry/sf-processor): /usr/local/sysflow/{bin,conf,resources}, INPUT_PATH,
# DRIVER, DRIVER_DIR, PLUGIN_DIR, LOG_LEVEL, CONFIG_PATH, user sysflow (uid 1001), VOLUME /sock.
#
#   docker build -t sfprocessor .            # from source: a Rust stage, then a slim Debian runtime
#   packaging/container/build.sh             # from the release binaries, without any registry
#
# build.sh passes BINARIES=prebuilt and BASE_IMAGE (a local debootstrap'ed bookworm when
# debian:bookworm-slim cannot be pulled); the `build` stage is then never run.
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG BINARIES=build

#-----------------------
# Stage: build (from source)
#-----------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sfprocessor -p sfreplay \
 && mkdir -p /out \
 && strip -o /out/sfprocessor target/release/sfprocessor \
 && strip -o /out/sfreplay target/release/sfreplay

#-----------------------
# Stage: prebuilt (packaging/container/build.sh stages stripped release binaries in prebuilt/)
#-----------------------
FROM scratch AS prebuilt
COPY prebuilt/ /out/

FROM ${BINARIES} AS binaries

#-----------------------
# Stage: runtime
#-----------------------
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=dev

# Upstream's variables; the entrypoint turns each non-empty one into its flag.
ENV INPUT_PATH=/sock/sysflow.sock \
    DRIVER=socket \
    DRIVER_DIR=/usr/local/sysflow/resources/drivers \
    PLUGIN_DIR=/usr/local/sysflow/resources/plugins \
    LOG_LEVEL=info \
    CONFIG_PATH=/usr/local/sysflow/conf/pipeline.json

LABEL name="SysFlow Processor" \
      vendor="SysFlow" \
      version="${VERSION}" \
      summary="SysFlow processor (Rust): applies policies to SysFlow telemetry and exports alerts or records" \
      io.k8s.display-name="SysFlow Processor"

# libssl3: the exporters' TLS client (native-tls) links the system OpenSSL; ca-certificates:
# the system roots that es/http/syslog TLS verify servers against by default.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --uid 1001 --user-group --no-create-home --home-dir /usr/local/sysflow --shell /usr/sbin/nologin sysflow \
 && mkdir -p /sock /usr/local/sysflow/resources/drivers /usr/local/sysflow/resources/plugins \
             /usr/local/sysflow/resources/handlers /usr/local/sysflow/resources/actions \
 && chown sysflow:sysflow /sock

COPY --from=binaries /out/sfprocessor /out/sfreplay /usr/local/sysflow/bin/
COPY packaging/container/entrypoint.sh /usr/local/sysflow/bin/sfprocessor-entrypoint
COPY packaging/container/pipeline.json /usr/local/sysflow/conf/pipeline.json
COPY config/policies/ /usr/local/sysflow/resources/policies/
COPY README.md /usr/local/sysflow/doc/

VOLUME /sock
USER sysflow
WORKDIR /usr/local/sysflow
ENTRYPOINT ["/usr/local/sysflow/bin/sfprocessor-entrypoint"]
