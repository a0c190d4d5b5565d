#!/usr/bin/env bash
# Checks the Dockerfile's build as far as a machine without a Docker engine can: copies exactly
# what the build stage COPYs into a fresh context (no .git, no target, no database), runs the
# stage's RUN command there with no DATABASE_URL, and checks that the binary the runtime stage
# copies exists and runs with the config it ships.
#
# The release build's target directory is cached outside the tree, so only the first run pays
# for compiling the dependencies in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/testenv-versions.sh
. scripts/testenv-versions.sh

context=$(mktemp -d -t rollback-bot-docker.XXXXXX)
trap 'rm -rf "$context"' EXIT

# The build stage is everything before the second FROM.
build_stage=$(awk '/^FROM /{n++} n==1' Dockerfile)
workdir=$(echo "$build_stage" | awk '$1=="WORKDIR"{print $2}')
run=$(echo "$build_stage" | sed -n 's/^RUN //p')
[ -n "$workdir" ] && [ -n "$run" ] || { echo "check-dockerfile: cannot read the build stage" >&2; exit 1; }
while read -r _ args; do
  # shellcheck disable=SC2086 # the COPY arguments are words
  set -- $args
  dest=${!#}
  for src in "${@:1:$#-1}"; do
    case "$dest" in
      ./) cp -r "$src" "$context/" ;;
      *) mkdir -p "$context/$dest" && cp -r "$src/." "$context/$dest/" ;;
    esac
  done
done < <(echo "$build_stage" | grep '^COPY ')

env_line=$(echo "$build_stage" | sed -n 's/^ENV //p')
echo "check-dockerfile: RUN $run (ENV $env_line, no DATABASE_URL) in a context of: $(ls -A "$context" | tr '\n' ' ')"
(
  cd "$context"
  # shellcheck disable=SC2086 # ENV KEY=VALUE words
  env -u DATABASE_URL $env_line CARGO_TARGET_DIR="$ROLLBACK_BOT_CACHE/docker-target" bash -c "$run"
)

# The runtime stage copies /src/target/release/rollback-bot; with the cached target dir that is:
binary="$ROLLBACK_BOT_CACHE/docker-target/release/rollback-bot"
grep -q "^COPY --from=build $workdir/target/release/rollback-bot " Dockerfile \
  || { echo "check-dockerfile: the runtime stage does not copy the binary the build makes" >&2; exit 1; }
shipped_config=$(sed -n 's|^COPY \(config/[^ ]*\) .*|\1|p' Dockerfile)
"$binary" --version
"$binary" --config "$shipped_config" check-config --offline >/dev/null
echo "check-dockerfile: ok ($(du -h "$binary" | cut -f1) release binary, runs with $shipped_config)"
