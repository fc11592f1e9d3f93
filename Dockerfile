# Build: docker build -t callcenter .
# Run:   docker run -p 8899:8899 -v callcenter-data:/data callcenter
# Data (the SQLite file and the recordings) lives in the /data volume.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them (with the build's
# settings: the bundled SQLite's flags).
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && strip target/release/callcenter

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --uid 10001 callcenter \
    && mkdir -p /data && chown callcenter /data
COPY --from=build /src/target/release/callcenter /usr/local/bin/callcenter
USER callcenter
WORKDIR /data
ENV CALLCENTER__SERVER__BIND=0.0.0.0:8899 \
    CALLCENTER__DATABASE__URL=sqlite:///data/callcenter.db \
    CALLCENTER__RECORDINGS__DIR=/data/recordings
VOLUME ["/data"]
EXPOSE 8899
STOPSIGNAL SIGTERM
ENTRYPOINT ["callcenter"]
CMD ["serve"]
