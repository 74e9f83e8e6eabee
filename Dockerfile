# syntax=docker/dockerfile:1
#
# One builder, one small image per service. Build a single service with
#   docker build --target upload-http2 -t video-platform/upload-http2 .
# or all of them through docker-compose.yml (`docker compose build`).
# Targets: upload-http2, upload-chunked, streaming, cdn-edge, transcode-worker.
# Requires BuildKit (the default builder of current Docker) for the cache mounts.

# --- build: every service binary, release profile ---------------------------
FROM rust:1-bookworm AS build
WORKDIR /app

# Only the workspace goes in, so editing docker-compose.yml, nginx/ or scripts/
# does not invalidate this layer. migrations/ is embedded at compile time
# (sqlx::migrate!), and tests/e2e is a workspace member cargo must be able to load.
COPY Cargo.toml Cargo.lock ./
COPY shared ./shared
COPY services ./services
COPY tests ./tests
COPY migrations ./migrations

# The registry and target directories are BuildKit cache mounts: a rebuild after
# a source change recompiles our crates, not the ~400 dependencies. The cache
# is not part of the image, so the binaries are copied out to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && for bin in upload-http2 upload-chunked transcode-worker streaming cdn-edge live-ingest; do \
        cp "target/release/$bin" /out/; \
    done

# --- runtime: shared base of the final stages --------------------------------
# curl is there for health checks (GET /health/ready), which docker-compose.yml
# defines: the listen port follows HTTP_ADDR, so the images do not hard-code one.
# The services stop gracefully on SIGTERM within SHUTDOWN_GRACE (default 30s).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
USER 10001:10001

# --- final stages, one per service --------------------------------------------
FROM runtime AS upload-http2
COPY --from=build /out/upload-http2 /usr/local/bin/upload-http2
EXPOSE 8001
ENTRYPOINT ["/usr/local/bin/upload-http2"]

FROM runtime AS upload-chunked
COPY --from=build /out/upload-chunked /usr/local/bin/upload-chunked
EXPOSE 8002
ENTRYPOINT ["/usr/local/bin/upload-chunked"]

FROM runtime AS streaming
COPY --from=build /out/streaming /usr/local/bin/streaming
EXPOSE 8003
ENTRYPOINT ["/usr/local/bin/streaming"]

# One image for every edge; each listens where its HTTP_ADDR says (default
# :8011). /var/cache/edge is the disk tier (EDGE_DISK_DIR), owned by the
# unprivileged user so a fresh volume mounted there is writable.
FROM runtime AS cdn-edge
USER root
RUN install -d -o app -g app -m 0750 /var/cache/edge
USER 10001:10001
COPY --from=build /out/cdn-edge /usr/local/bin/cdn-edge
EXPOSE 8011
ENTRYPOINT ["/usr/local/bin/cdn-edge"]

# Services that run ffmpeg (the worker, live-ingest) share this base.
FROM runtime AS media-runtime
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001

# The worker runs ffmpeg/ffprobe; /var/lib/transcode is its WORK_DIR (scratch
# space for sources and outputs) and belongs to the unprivileged user.
FROM media-runtime AS transcode-worker
USER root
RUN install -d -o app -g app -m 0750 /var/lib/transcode
COPY --from=build /out/transcode-worker /usr/local/bin/transcode-worker
USER 10001:10001
# 8021 serves /health/* and /metrics only.
EXPOSE 8021
ENTRYPOINT ["/usr/local/bin/transcode-worker"]

# Live: RTMP publishers on 1935, the LL-HLS origin and /api/v1/live on 8004.
# It runs one ffmpeg per broadcast (the live ladder) and assembles replays in
# /var/lib/live (WORK_DIR).
FROM media-runtime AS live-ingest
USER root
RUN install -d -o app -g app -m 0750 /var/lib/live
COPY --from=build /out/live-ingest /usr/local/bin/live-ingest
USER 10001:10001
EXPOSE 8004 1935
ENTRYPOINT ["/usr/local/bin/live-ingest"]
