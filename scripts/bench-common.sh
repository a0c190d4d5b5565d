# Sourced by the benchmark scripts. `--smoke` as the first argument (`make test` passes it)
# runs the benchmark once, small, in the test build's profile, reusing the artefacts of
# `cargo test`: it proves the script and the benchmark still work, and times nothing.
# `cargo_bench NAME` (or "${bench_cargo[@]}" NAME) builds and runs benches/NAME.rs so.
bench_smoke=
bench_cargo=(cargo bench --locked --bench)
if [ "${1:-}" = "--smoke" ]; then
  bench_smoke=1
  bench_cargo=(cargo test --locked --all-features --bench)
  export BENCH_SMOKE=1
  shift
fi
cargo_bench() { "${bench_cargo[@]}" "$1"; }
