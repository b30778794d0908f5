# Multi-stage build: compile the release binary, then run it as a non-root
# user in a small Debian image with the example config.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin simgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/simgate --create-home simgate
COPY --from=build /src/target/release/simgate /usr/local/bin/simgate
COPY config /etc/simgate
# The audit trail goes to audit/ next to the config: writable by the service
# user only; mount a volume there to keep it.
RUN mkdir -p /etc/simgate/audit && chown simgate:simgate /etc/simgate/audit && chmod 700 /etc/simgate/audit
USER simgate
WORKDIR /var/lib/simgate
EXPOSE 8080
ENTRYPOINT ["simgate"]
CMD ["serve", "--config", "/etc/simgate/simgate.toml"]
