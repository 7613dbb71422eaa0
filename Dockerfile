# syntax=docker/dockerfile:1
# One image with the four streamwatch binaries (producer, scorer, monitor, sink), the bundled TLC
# data, the zone lookup, the reference data, the model and the monitoring specs;
# docker-compose.yml picks the binary per service.

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
# curl for the compose healthchecks (/readyz on the admin port); libssl3 for TLS (the builder
# image, buildpack-deps, has its headers).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app streamwatch
WORKDIR /app
COPY --from=builder /out/ /usr/local/bin/
# Read at run time, relative to /app: the replayed month, data/reference.parquet and
# data/taxi_zone_lookup.csv (named by the spec), the model, and the specs (their paths are
# relative to the spec file: examples/specs/../../data/...).
COPY data/ /app/data/
COPY models/ /app/models/
COPY examples/specs/ /app/examples/specs/
USER streamwatch
ENV RUST_LOG=info \
    ADMIN_ADDR=0.0.0.0:9000
EXPOSE 9000
