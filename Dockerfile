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
# An image whose bundled rules or configuration do not load is not worth shipping.
RUN /out/trailwatch rules check rules \
    && /out/trailwatch rules test --quiet rules \
    && TRAILWATCH_RULES=rules /out/trailwatch run --config deploy/trailwatch.toml --check-config >/dev/null

# --- runtime -----------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the AWS SDK verifies TLS against the system roots. Nothing else:
# the HEALTHCHECK is the binary's own `trailwatch healthcheck` (no shell, no curl).
# Versions are deliberately not pinned: Debian replaces a stable release's package
# versions with each point and security release and drops the old ones from the
# mirrors, so pins would break rebuilds; the bookworm base tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric id, so that orchestrators can verify "non-root" without /etc/passwd.
RUN groupadd --system --gid 10001 trailwatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin trailwatch

COPY --from=build /out/trailwatch /usr/local/bin/trailwatch
COPY rules/ /etc/trailwatch/rules/
COPY deploy/trailwatch.toml /etc/trailwatch/trailwatch.toml

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
ENTRYPOINT ["trailwatch"]
CMD ["run", "--config", "/etc/trailwatch/trailwatch.toml"]
