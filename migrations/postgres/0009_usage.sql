-- Disk, bandwidth and inode usage of each hosting account, sampled by the `usage-sync` job.
--
-- Sizes are bytes. A limit column holds the limit, -1 when the panel says the resource is
-- unlimited, or NULL when the panel did not report one; a *_used column is NULL when the panel
-- did not report it. Unknown is thus never mistaken for unlimited, nor for zero.

-- Every sample, kept for USAGE_RETENTION_DAYS (the job prunes older ones).
CREATE TABLE service_usage_samples (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    taken_at BIGINT NOT NULL,
    disk_used_bytes BIGINT CHECK (disk_used_bytes >= 0),
    disk_limit_bytes BIGINT CHECK (disk_limit_bytes >= -1),
    bandwidth_used_bytes BIGINT CHECK (bandwidth_used_bytes >= 0),
    bandwidth_limit_bytes BIGINT CHECK (bandwidth_limit_bytes >= -1),
    inodes_used BIGINT CHECK (inodes_used >= 0),
    inodes_limit BIGINT CHECK (inodes_limit >= -1)
);
-- One sample per service and instant; also the history listing, newest first.
CREATE UNIQUE INDEX service_usage_samples_service_taken ON service_usage_samples (service_id, taken_at);
-- The retention sweep.
CREATE INDEX service_usage_samples_taken ON service_usage_samples (taken_at);

-- The latest sample of each service (what the service's JSON shows, one row per service), and
-- its over-quota episode: over_quota_since is when the service was first seen above a finite
-- disk or bandwidth limit in the episode still running (NULL: not over quota), and
-- over_quota_notified_at when the admin was told about that episode (NULL: not yet).
CREATE TABLE service_usage_latest (
    service_id BIGINT PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    sample_id BIGINT NOT NULL,
    taken_at BIGINT NOT NULL,
    disk_used_bytes BIGINT,
    disk_limit_bytes BIGINT,
    bandwidth_used_bytes BIGINT,
    bandwidth_limit_bytes BIGINT,
    inodes_used BIGINT,
    inodes_limit BIGINT,
    over_quota_since BIGINT,
    over_quota_notified_at BIGINT
);
-- The episodes the admin has not been told about yet.
CREATE INDEX service_usage_latest_unnotified ON service_usage_latest (service_id)
    WHERE over_quota_since IS NOT NULL AND over_quota_notified_at IS NULL;

-- The job pages through each server's live accounts by id.
CREATE INDEX services_server_live ON services (server_id, id)
    WHERE status IN ('active', 'suspended');
