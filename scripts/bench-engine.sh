#!/usr/bin/env bash
# One command for the engine benchmark on a throw-away PostgreSQL; numbers go in docs/engine.md.
exec "$(dirname "$0")/with-postgres.sh" cargo bench --locked --bench engine
