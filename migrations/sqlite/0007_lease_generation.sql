-- A fencing token for the lease: bumped by every claim (a new attempt, or a call taken
-- over from a node whose lease ran out). A node writes about its attempt only while the
-- generation is still the one its claim returned, so a node that comes back late can no
-- longer overwrite what the node that took its call over wrote.
ALTER TABLE tasks ADD COLUMN lease_gen INTEGER NOT NULL DEFAULT 0;
