-- Products name how often their accounts are backed up; each backup says why it was taken
-- (an admin's, the schedule's, or the final one before a termination); a terminated account can
-- be restored from a backup, which is a task like the other lifecycle moves.
ALTER TABLE products ADD COLUMN backup_schedule TEXT NOT NULL DEFAULT 'none'
    CHECK (backup_schedule IN ('none', 'daily', 'weekly', 'monthly'));

ALTER TABLE backups ADD COLUMN purpose TEXT NOT NULL DEFAULT 'manual'
    CHECK (purpose IN ('manual', 'scheduled', 'final'));
-- The scheduled-backup job reads each service's newest backup.
CREATE INDEX backups_service_created ON backups (service_id, created_at);

ALTER TABLE provisioning_tasks DROP CONSTRAINT provisioning_tasks_task_type_check;
ALTER TABLE provisioning_tasks ADD CONSTRAINT provisioning_tasks_task_type_check CHECK (task_type IN
    ('provision', 'suspend', 'unsuspend', 'terminate', 'change_package', 'change_password', 'restore'));

-- The termination job reads services suspended for non-payment by when they were suspended.
CREATE INDEX services_suspended ON services (status, suspension_reason, suspended_at);
