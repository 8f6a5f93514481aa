-- Silences of the notify stage. The silence itself is stored as the JSON
-- of Alertmanager's v2 shape; expired silences are kept for audit.
CREATE TABLE silences (
    id            TEXT PRIMARY KEY,
    body          TEXT NOT NULL,
    ends_at_ms    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
