# The two commands a fresh machine needs are `make test` and `make run`; README.md explains.
.PHONY: run bad-deploy test test-fast bench-engine

run:            ## the bot on a throw-away Postgres and the local kwok cluster with demo-api
	bash scripts/run-local.sh

bad-deploy:     ## while `make run` runs: demo-api rolls out a version that fails 5 % of requests
	. $${ROLLBACK_BOT_LOCAL_STATE:-.testenv/local}/env && kubectl="$$ROLLBACK_BOT_TEST_KUBECTL --kubeconfig $$ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN -n demo" && \
	  $$kubectl set image deployment/demo-api demo-api=registry.local/demo-api:errors && \
	  $$kubectl annotate --overwrite deployment demo-api kubernetes.io/change-cause="deploy errors (bad)" \
	    rollback-bot.io/deployed-by=riley@example.test

test:           ## everything: Postgres + Kubernetes control plane, lints, all tests
	bash scripts/test.sh

test-fast:      ## unit tests of pure logic only: no database, no cluster
	cargo test --lib

bench-engine:   ## state-machine throughput and claim latency on a throw-away Postgres
	bash scripts/bench-engine.sh
