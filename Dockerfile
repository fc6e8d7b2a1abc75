# The tessera node as a container image: `docker build -t tessera .`
#
# Build stage: the release binary, from the locked dependency set. Runtime stage: Debian
# slim with only the binary and CA certificates, run as an unprivileged user.
#
#   docker run --rm -p 4433:4433/udp -p 8080:8080 tessera
#
# runs a node on the embedded default world (no Redis, no MongoDB; dev certificate and
# secrets generated into /var/lib/tessera/data, a volume). For a cluster, see
# deploy/kubernetes/tessera.yaml: it mounts a config at /etc/tessera and passes
# `serve --config /etc/tessera` with TESSERA__* overrides.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tessera-server --bin tessera \
    && install -D -m 0755 target/release/tessera /out/tessera

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/tessera --create-home tessera
COPY --from=build /out/tessera /usr/local/bin/tessera
COPY config /etc/tessera-default
USER 10001:10001
WORKDIR /var/lib/tessera
VOLUME ["/var/lib/tessera"]
# Reachable from outside the container (the embedded default listens on loopback only).
ENV TESSERA__NET__QUIC_LISTEN=0.0.0.0:4433 \
    TESSERA__NET__ADMIN_LISTEN=0.0.0.0:8080
EXPOSE 4433/udp 8080/tcp
# A graceful stop (SIGTERM) saves the connected players and commits the region snapshots.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["serve"]
