-- Foundation: facts about this state database and the config reload history.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per config load or reload attempt: the audit trail for "who changed
-- what homeostat watches, and did it take".
CREATE TABLE IF NOT EXISTS config_reloads (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    source      TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    success     INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS config_reloads_at ON config_reloads (at_ms);
