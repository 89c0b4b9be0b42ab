-- PostgreSQL leaves room on provisioning_tasks' pages for each step's rewrite of its row
-- (fillfactor). SQLite has no such setting: nothing to change here; the file keeps both
-- backends' migrations numbered alike.
SELECT 1;
