-- Scheduled jobs: a fenced leader lease and cron runs worked as a queue by the job runner.

-- The fencing epoch of a named lease: raised on every change of holder, so a write made under
-- an older epoch (a leader that stalled past its lease) can be told apart and refused.
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- SQLite cannot change a CHECK or a NOT NULL in place: cron_runs is rebuilt. A run is queued
-- by the leader (or an admin), claimed by any replica's job runner under a lease, and ends
-- succeeded or failed.
CREATE TABLE cron_runs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name          TEXT   NOT NULL,
    scheduled_for     BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    status            TEXT   NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- The job's summary once it succeeded; NULL before and on failure.
    output            TEXT,
    runner            TEXT,
    trigger           TEXT   NOT NULL DEFAULT 'schedule'
                      CHECK (trigger IN ('schedule', 'manual', 'catch-up')),
    -- The leader epoch that queued a scheduled or catch-up run; NULL for a manual run.
    epoch             BIGINT,
    error             TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL DEFAULT 0,
    lease_holder      TEXT,
    lease_expires_at  BIGINT,
    created_at        BIGINT NOT NULL DEFAULT 0,
    UNIQUE (job_name, scheduled_for)
);
INSERT INTO cron_runs_new (id, job_name, scheduled_for, started_at, finished_at, status, output,
                           runner, created_at, next_attempt_at)
    SELECT id, job_name, scheduled_for, started_at, finished_at, status, output, runner,
           COALESCE(started_at, scheduled_for), scheduled_for
    FROM cron_runs;
DROP TABLE cron_runs;
ALTER TABLE cron_runs_new RENAME TO cron_runs;

-- One manual run of a job open at a time: a second request answers the first.
CREATE UNIQUE INDEX cron_runs_one_open_manual ON cron_runs (job_name)
    WHERE trigger = 'manual' AND status IN ('queued', 'running');
CREATE INDEX cron_runs_runnable ON cron_runs (next_attempt_at) WHERE status = 'queued';
CREATE INDEX cron_runs_leases ON cron_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX cron_runs_job ON cron_runs (job_name, id);
