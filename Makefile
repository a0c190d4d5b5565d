# The two commands a fresh machine needs are `make test` and `make run`; README.md explains.
.PHONY: run test test-fast bench-engine

run:            ## the bot on a throw-away Postgres and the local kwok cluster with demo-api
	bash scripts/run-local.sh

test:           ## everything: Postgres + Kubernetes control plane, lints, all tests
	bash scripts/test.sh

test-fast:      ## unit tests of pure logic only: no database, no cluster
	cargo test --lib

bench-engine:   ## state-machine throughput and claim latency on a throw-away Postgres
	bash scripts/bench-engine.sh
