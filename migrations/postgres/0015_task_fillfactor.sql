-- A provisioning task's row is rewritten once per step (its result records each step). None
-- of those writes changes an indexed column, so PostgreSQL can keep the new version on the
-- same page and leave the table's six indexes alone (a heap-only update), but only where the
-- page has room. Pages filled by inserts to 100 % have none, and every step then wrote seven
-- index entries. Leave room on each page for the rewrites.
ALTER TABLE provisioning_tasks SET (fillfactor = 50);
