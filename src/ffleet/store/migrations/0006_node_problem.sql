-- nodes.problem: what keeps a node from taking work (its spool cannot be written)

ALTER TABLE nodes ADD COLUMN problem TEXT;
