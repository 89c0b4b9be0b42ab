-- The queue claim reads pending tasks by due time. Without this index the planner reads them
-- through (status, created_at), i.e. every pending task, waiting ones included, on each claim:
-- with thousands queued (a burst of orders, no free server) each claim scanned them all, and on
-- SQLite it did so holding the write lock every other writer waits for.
CREATE INDEX provisioning_tasks_due ON provisioning_tasks (status, next_attempt_at);
