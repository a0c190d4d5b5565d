#!/usr/bin/env bash
# Slash-command ack latency on a throw-away PostgreSQL; numbers go in docs/slack.md.
exec "$(dirname "$0")/with-postgres.sh" cargo bench --locked --bench slack_ack
