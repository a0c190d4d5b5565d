-- Recovery validation (P99, error rate, health, soak) runs as its own step after verification.
alter type rollback_state add value if not exists 'validating' after 'verifying';
