# syntax=docker/dockerfile:1
#
# trailwatch worker image.
#
#   docker build -t trailwatch .
#   docker run --read-only -e TRAILWATCH_QUEUE_URL=... -e TRAILWATCH_SINKS=stdout \
#       -e AWS_REGION=eu-west-1 trailwatch
#
# The image runs `trailwatch run --config /etc/trailwatch/trailwatch.toml` as an
# unprivileged user, with the bundled rules in /etc/trailwatch/rules. Nothing is
# written at run time (alerts and logs go to stdout/stderr), so it runs with a
# read-only root file system. To try other rules without rebuilding, mount a directory
# over /etc/trailwatch/rules and send SIGHUP (`docker kill --signal HUP ...`).
#
# It is distroless: the binary, the C libraries it links, CA certificates, passwd and
# group entries for its user, the rules and the configuration; no shell, no package
# manager. Exec into it with the binary (`docker exec NAME trailwatch healthcheck`).

# Where the binary comes from: the build stage below (the default), or /out/trailwatch
# of an image holding one built elsewhere, linked against bookworm's glibc or older
# (scripts/build-image --binary PATH makes one; the tests ship their debug build this way).
ARG BINARY_FROM=build

# --- build -------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target directory between builds;
# the binary is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/trailwatch /out/trailwatch

# checkov:skip=CKV_DOCKER_7:the stage is the build stage above by default, an image the caller names otherwise
FROM ${BINARY_FROM} AS binary

# --- runtime file system -----------------------------------------------------------
# Assembled in a Debian of the same release as the build stage, so that the C
# libraries copied out are the ones the binary was linked against.
FROM debian:bookworm-slim AS rootfs
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ca-certificates: the AWS SDK verifies TLS against the system roots; binutils for
# objcopy (below). Neither reaches the runtime image but the certificate bundle.
# Versions are deliberately not pinned: Debian replaces a stable release's package
# versions with each point and security release and drops the old ones from the
# mirrors, so pins would break rebuilds; the bookworm base tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=binary /out/trailwatch /rootfs/usr/local/bin/trailwatch
COPY rules/ /rootfs/etc/trailwatch/rules/
COPY deploy/trailwatch.toml /rootfs/etc/trailwatch/trailwatch.toml
WORKDIR /rootfs

# An image whose binary does not run on these libraries, or whose bundled rules or
# configuration do not load, is not worth shipping.
RUN usr/local/bin/trailwatch rules check etc/trailwatch/rules \
    && usr/local/bin/trailwatch rules test --quiet etc/trailwatch/rules \
    && TRAILWATCH_RULES=etc/trailwatch/rules usr/local/bin/trailwatch run \
        --config etc/trailwatch/trailwatch.toml --check-config >/dev/null

# The rest of the tree: the libraries ldd lists (glibc's loader, libc, libm,
# libgcc_s), the CA bundle, nsswitch.conf (host names from /etc/hosts, then DNS: both
# built into this glibc) and a fixed numeric user, so that orchestrators can verify
# "non-root" without reading /etc/passwd. The binary's debug sections (line tables,
# for the file and line of a panic's backtrace) are compressed: less than half the size.
RUN ldd usr/local/bin/trailwatch | grep -oE '/[^ ]+' | sort -u | xargs cp --parents -L -t . \
    && objcopy --compress-debug-sections=zlib usr/local/bin/trailwatch \
    && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt etc/ssl/certs/ca-certificates.crt \
    && echo 'hosts: files dns' >etc/nsswitch.conf \
    && echo 'trailwatch:x:10001:10001:trailwatch:/nonexistent:/sbin/nologin' >etc/passwd \
    && echo 'trailwatch:x:10001:' >etc/group

# --- runtime -----------------------------------------------------------------------
FROM scratch

COPY --from=rootfs /rootfs/ /

# No shell to find commands with: `docker exec NAME trailwatch ...` looks here.
ENV PATH=/usr/local/bin
# Loopback: the HEALTHCHECK runs inside the container, and nothing else needs to
# reach the endpoints. To scrape /metrics through a published port, set
# TRAILWATCH_HEALTH_LISTEN=0.0.0.0:8080 (docker run -e ... -p 8080:8080).
ENV TRAILWATCH_HEALTH_LISTEN=127.0.0.1:8080
# JSON log lines (one object per line, strings escaped): what log drivers and
# CloudWatch Logs Insights read. `--log-format text` for a person at a terminal.
ENV TRAILWATCH_LOG_FORMAT=json

USER 10001:10001

# /healthz answers as long as the process runs; /readyz also needs a recent SQS poll.
# `trailwatch healthcheck` GETs /healthz on the port of TRAILWATCH_HEALTH_LISTEN and
# exits 0 on 2xx, 1 otherwise (its own timeout: 2 s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/trailwatch", "healthcheck"]

# SIGTERM drains in-flight files within shutdown_grace (25 s): give `docker stop`
# at least 30 s (`--stop-timeout 30`); ECS waits 30 s by default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/trailwatch"]
CMD ["run", "--config", "/etc/trailwatch/trailwatch.toml"]
