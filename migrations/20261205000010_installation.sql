-- One row naming this installation of the bot. Its id goes into the label that finds a
-- rollback's post-incident ticket again, so two installations (staging and production)
-- sharing a Jira project or a GitHub repository, each numbering its rollbacks from 1, never
-- take each other's ticket for their own.
create table installation (
    singleton boolean primary key default true check (singleton),
    id text not null default substr(md5(gen_random_uuid()::text), 1, 12),
    created_at timestamptz not null default now()
);
insert into installation default values;
