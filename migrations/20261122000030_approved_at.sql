-- When the last required sign-off was given: execution refuses to start once the approval is
-- older than timeouts.approval_max_age (an approval must not act hours later, after an outage).
alter table rollback add column approved_at timestamptz;
