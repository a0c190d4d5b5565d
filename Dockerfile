# Multi-stage build of the rollback-bot image: a static-ish release binary on a distroless,
# non-root base. Builds without a database: queries are checked against the committed .sqlx/.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY src src
# Workspace members (the Slack sandbox, the service simulator): needed for the workspace to
# load, never built here; the image gets only the rollback-bot binary.
COPY crates crates
COPY benches benches
COPY config config
COPY assets assets
RUN cargo build --release --locked --bin rollback-bot

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/rollback-bot /usr/local/bin/rollback-bot
COPY config/rollback-bot.example.toml /etc/rollback-bot/rollback-bot.toml
ENV ROLLBACK_BOT_CONFIG=/etc/rollback-bot/rollback-bot.toml
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rollback-bot"]
CMD ["serve"]
