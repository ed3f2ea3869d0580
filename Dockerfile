# The pulse container image: a release build, then the binary alone on a small Debian base,
# run as an unprivileged user in /srv/pulse with the lake, state and config as volumes.
#
#   docker build -t pulse --build-arg PULSE_GIT_COMMIT=$(git rev-parse --short HEAD) .
#   docker build -t pulse-ballista --build-arg FEATURES=ballista .   # Ballista backends too
#
# Everything pulse reads at run time (SQL models, report templates, labels, the CJK chart font)
# is compiled into the binary, so the runtime stage copies nothing else from the source tree.

# The toolchain the project is tested with (rust-version in Cargo.toml is the minimum).
FROM rust:1.95-bookworm AS build
ARG FEATURES=""
# .git is not sent to the builder (.dockerignore): pass the commit for `pulse --version`.
ARG PULSE_GIT_COMMIT=unknown
ENV PULSE_GIT_COMMIT=${PULSE_GIT_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features "${FEATURES}" \
    && cp target/release/pulse /usr/local/bin/pulse

FROM debian:bookworm-slim
# ca-certificates: object-store lakes and webhooks to hosts with publicly issued
# certificates; tzdata is not needed (chrono-tz compiles the zone database in), nor any font.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pulse \
    && useradd --system --uid 10001 --gid pulse --home-dir /srv/pulse --shell /usr/sbin/nologin pulse \
    && mkdir -p /srv/pulse/lake /srv/pulse/state /srv/pulse/config \
    && chown -R pulse:pulse /srv/pulse
COPY --from=build /usr/local/bin/pulse /usr/local/bin/pulse
USER 10001:10001
WORKDIR /srv/pulse
# The config's defaults are relative to the working directory: lake = "./lake",
# state_dir = "./state"; the config itself is read from config/pulse.toml.
VOLUME ["/srv/pulse/lake", "/srv/pulse/state", "/srv/pulse/config"]
# `pulse serve`'s webhook receiver, when [ingest] listen = "0.0.0.0:8080".
EXPOSE 8080
ENTRYPOINT ["pulse"]
CMD ["--help"]
