# Builds the gateway, authzctl and the demo upstream into one small runtime image.
# Used by docker-compose.yml; not exercised by CI on machines without a Docker engine.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p authz-gateway -p authz-admin -p demo-upstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 authz
COPY --from=build /src/target/release/authz-gateway /src/target/release/authzctl \
     /src/target/release/demo-upstream /usr/local/bin/
COPY policies /etc/authz/policies
COPY deploy/gateway.compose.toml /etc/authz/gateway.toml
USER authz
WORKDIR /var/lib/authz
ENTRYPOINT ["authz-gateway"]
