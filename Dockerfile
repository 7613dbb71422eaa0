# syntax=docker/dockerfile:1
# One image with the four streamwatch binaries (producer, scorer, monitor, sink), the bundled TLC
# data and the model; docker-compose.yml picks the binary per service.

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# librdkafka is compiled from source by rdkafka-sys (needs make, gcc, perl: all in this image);
# the cache mounts keep the registry and the target folder between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p streamwatch-producer -p streamwatch-scorer -p streamwatch-monitor -p streamwatch-sink \
 && mkdir -p /out \
 && cp target/release/producer target/release/scorer target/release/monitor target/release/sink /out/

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl for the compose healthchecks (/readyz on the admin port).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app streamwatch
WORKDIR /app
COPY --from=builder /out/ /usr/local/bin/
COPY data/ /app/data/
COPY models/ /app/models/
USER streamwatch
ENV RUST_LOG=info \
    ADMIN_ADDR=0.0.0.0:9000
EXPOSE 9000
