-- Alert lifecycle state, so a restart pauses `for` timers instead of
-- resetting them and keeps resolved alerts being re-sent.
CREATE TABLE alerts (
    group_key         TEXT    NOT NULL,
    rule              TEXT    NOT NULL, -- alert name + static labels
    labels            TEXT    NOT NULL, -- JSON object
    annotations       TEXT    NOT NULL, -- JSON object
    state             TEXT    NOT NULL, -- pending | firing | inactive
    value             REAL    NOT NULL,
    active_at_ms      INTEGER NOT NULL,
    fired_at_ms       INTEGER,
    resolved_at_ms    INTEGER,
    keep_firing_since_ms INTEGER
);
CREATE INDEX alerts_group ON alerts (group_key);

-- Last evaluation of each group: how long the daemon was away.
CREATE TABLE rule_groups (
    group_key     TEXT PRIMARY KEY,
    last_eval_ms  INTEGER NOT NULL
);
