-- The approval reminder (src/db/rollbacks.rs, `remind_due`): when half of a request's
-- approval window has passed without a decision, one thread reply mentions the approvers
-- again. Setting this column in the statement that writes the reminder's audit row makes it
-- exactly once across replicas (a second replica's UPDATE waits on the row lock, then sees it
-- set) and across crashes (one statement).
alter table rollback add column reminded_at timestamptz;
