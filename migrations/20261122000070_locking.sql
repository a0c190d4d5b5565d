-- After a successful rollback (and its recovery validation) the Deployment is locked against
-- re-deploys (src/lock.rs, config/kubernetes/base/deploy-lock.yaml) as a step of its own.
alter type rollback_state add value if not exists 'locking' after 'validating';
