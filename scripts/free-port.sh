# Sourced by the scripts that start local servers: `free_port` prints a loopback port nothing
# listens on.
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "error: no free loopback port found" >&2
  exit 1
}
