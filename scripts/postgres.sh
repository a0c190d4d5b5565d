#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests, benchmarks and local runs.
#
#   scripts/postgres.sh up DIR    initdb in DIR/pg, start it on a free loopback port,
#                                 write DIR/pg.env (export DATABASE_URL=...)
#   scripts/postgres.sh down DIR  stop it and remove DIR/pg
#   scripts/postgres.sh restart DIR   restart it in place (fault-injection tests)
#
# Uses Debian's PostgreSQL server, installing it with apt-get when it is missing.
# The cluster trades durability for speed (fsync off): it holds test data only.
#
# As root the server runs as the package's `postgres` user, which must be able to reach its
# data directory. DIR/pg is used when it can; when a parent of DIR is private (a clone under
# /root, a `mktemp -d` directory) the data goes to a fresh /tmp/rollback-bot-pg.XXXXXX
# instead, named in DIR/pg.location, and `down` removes it.
set -euo pipefail

cmd=${1:?usage: postgres.sh up|down DIR}
dir=${2:?usage: postgres.sh up|down DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# Where this DIR's cluster keeps its files (see the header).
data="$dir/pg"
[ -f "$dir/pg.location" ] && data=$(cat "$dir/pg.location")

pg_bin() {
  local found
  # The client packages alone also create .../bin: look for the server itself.
  found=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$found" ]; then
    echo "postgres: server not installed; installing Debian's postgresql package..." >&2
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: PostgreSQL is missing and installing it needs root: apt-get install postgresql" >&2
      exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    found=$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)
  fi
  dirname "$found"
}

# initdb and postgres refuse to run as root; run them as the package's postgres user then.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# shellcheck source=scripts/free-port.sh
. "$(dirname "$0")/free-port.sh"

case "$cmd" in
  up)
    bin=$(pg_bin)
    rm -rf "$data" "$dir/pg" "$dir/pg.location"
    data="$dir/pg"
    mkdir -p "$data"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$data"
      # DIR itself may be private (mktemp -d): let the postgres user through it.
      chmod a+x "$dir"
      if ! runuser -u postgres -- test -w "$data"; then
        # A parent of DIR is private too; that one is not ours to open up.
        rmdir "$data"
        data=$(mktemp -d /tmp/rollback-bot-pg.XXXXXX)
        chown postgres: "$data"
        echo "$data" >"$dir/pg.location"
        echo "postgres: the postgres user cannot reach $dir (a parent directory is private); data in $data instead" >&2
      fi
    fi
    as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 >/dev/null
    port=$(free_port)
    as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=300 \
       -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
    {
      echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
      # Lets fault-injection tests restart this server (`postgres.sh restart DIR`).
      echo "export ROLLBACK_BOT_TEST_PG_DIR=$dir"
    } > "$dir/pg.env"
    echo "postgres: $("$bin/postgres" --version) on 127.0.0.1:$port (data in $data)"
    ;;
  down)
    if [ -f "$data/postmaster.pid" ]; then
      bin=$(pg_bin)
      as_owner "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$data" "$dir/pg" "$dir/pg.location" "$dir/pg.env"
    ;;
  restart)
    # Fast shutdown (every connection is cut, as a failover would), then start again.
    as_owner "$(pg_bin)/pg_ctl" -D "$data" -m fast -w -t 60 restart >/dev/null
    ;;
  *)
    echo "usage: postgres.sh up|down|restart DIR" >&2
    exit 2
    ;;
esac
