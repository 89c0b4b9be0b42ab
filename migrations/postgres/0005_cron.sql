-- Scheduled jobs: a fenced leader lease and cron runs worked as a queue by the job runner.

-- The fencing epoch of a named lease: raised on every change of holder, so a write made under
-- an older epoch (a leader that stalled past its lease) can be told apart and refused.
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- A run is queued by the leader (or an admin), claimed by any replica's job runner under a
-- lease, and ends succeeded or failed.
ALTER TABLE cron_runs DROP CONSTRAINT cron_runs_status_check;
ALTER TABLE cron_runs ADD CONSTRAINT cron_runs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed'));
ALTER TABLE cron_runs ALTER COLUMN started_at DROP NOT NULL;
ALTER TABLE cron_runs ALTER COLUMN runner DROP NOT NULL;
-- The job's summary once it succeeded; NULL before and on failure.
ALTER TABLE cron_runs ALTER COLUMN output DROP NOT NULL;
ALTER TABLE cron_runs ALTER COLUMN output DROP DEFAULT;
ALTER TABLE cron_runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'schedule'
    CHECK (trigger IN ('schedule', 'manual', 'catch-up'));
-- The leader epoch that queued a scheduled or catch-up run; NULL for a manual run.
ALTER TABLE cron_runs ADD COLUMN epoch BIGINT;
ALTER TABLE cron_runs ADD COLUMN error TEXT;
ALTER TABLE cron_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cron_runs ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cron_runs ADD COLUMN lease_holder TEXT;
ALTER TABLE cron_runs ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE cron_runs ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
UPDATE cron_runs SET created_at = COALESCE(started_at, scheduled_for), next_attempt_at = scheduled_for;

-- One manual run of a job open at a time: a second request answers the first.
CREATE UNIQUE INDEX cron_runs_one_open_manual ON cron_runs (job_name)
    WHERE trigger = 'manual' AND status IN ('queued', 'running');
CREATE INDEX cron_runs_runnable ON cron_runs (next_attempt_at) WHERE status = 'queued';
CREATE INDEX cron_runs_leases ON cron_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX cron_runs_job ON cron_runs (job_name, id);
