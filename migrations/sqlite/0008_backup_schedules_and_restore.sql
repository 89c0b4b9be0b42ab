-- Products name how often their accounts are backed up; each backup says why it was taken
-- (an admin's, the schedule's, or the final one before a termination); a terminated account can
-- be restored from a backup, which is a task like the other lifecycle moves.
ALTER TABLE products ADD COLUMN backup_schedule TEXT NOT NULL DEFAULT 'none'
    CHECK (backup_schedule IN ('none', 'daily', 'weekly', 'monthly'));

ALTER TABLE backups ADD COLUMN purpose TEXT NOT NULL DEFAULT 'manual'
    CHECK (purpose IN ('manual', 'scheduled', 'final'));
-- The scheduled-backup job reads each service's newest backup.
CREATE INDEX backups_service_created ON backups (service_id, created_at);

-- SQLite cannot change a CHECK constraint: the task table is rebuilt with the new kind. No
-- table references it, so it can be dropped and renamed in place.
CREATE TABLE provisioning_tasks_rebuilt (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id        BIGINT  NOT NULL REFERENCES services (id),
    task_type         TEXT    NOT NULL CHECK (task_type IN
                      ('provision', 'suspend', 'unsuspend', 'terminate', 'change_package', 'change_password', 'restore')),
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_retries       INTEGER NOT NULL DEFAULT 3,
    result            TEXT   NOT NULL DEFAULT '{"steps":[]}',
    params            TEXT   NOT NULL DEFAULT '{}',
    error             TEXT,
    wait_reason       TEXT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    next_attempt_at   BIGINT  NOT NULL,
    lease_holder      TEXT,
    lease_expires_at  BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    completed_at      BIGINT,
    cleared_at        BIGINT
);
INSERT INTO provisioning_tasks_rebuilt
    (id, service_id, task_type, status, attempts, max_retries, result, params, error, wait_reason,
     idempotency_key, next_attempt_at, lease_holder, lease_expires_at, created_at, updated_at,
     completed_at, cleared_at)
SELECT id, service_id, task_type, status, attempts, max_retries, result, params, error, wait_reason,
       idempotency_key, next_attempt_at, lease_holder, lease_expires_at, created_at, updated_at,
       completed_at, cleared_at
FROM provisioning_tasks;
-- Task ids name the agents' idempotency keys: the counter carries over even past deleted rows.
UPDATE sqlite_sequence
   SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'provisioning_tasks')
 WHERE name = 'provisioning_tasks_rebuilt'
   AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'provisioning_tasks');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'provisioning_tasks_rebuilt', seq FROM sqlite_sequence
 WHERE name = 'provisioning_tasks'
   AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'provisioning_tasks_rebuilt');
DROP TABLE provisioning_tasks;
ALTER TABLE provisioning_tasks_rebuilt RENAME TO provisioning_tasks;
CREATE UNIQUE INDEX provisioning_tasks_one_open ON provisioning_tasks (service_id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX provisioning_tasks_runnable ON provisioning_tasks (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX provisioning_tasks_leases ON provisioning_tasks (lease_expires_at)
    WHERE status = 'processing';
CREATE INDEX provisioning_tasks_status_created ON provisioning_tasks (status, created_at);
CREATE INDEX provisioning_tasks_service ON provisioning_tasks (service_id);
CREATE INDEX provisioning_tasks_due ON provisioning_tasks (status, next_attempt_at);

-- The termination job reads services suspended for non-payment by when they were suspended.
CREATE INDEX services_suspended ON services (status, suspension_reason, suspended_at);
