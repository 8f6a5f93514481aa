-- Playbook runs: the write-ahead audit log of the act stage. A run row is
-- written before anything happens; a step row before its action starts and
-- again when it ends, so after a crash a finished step is never repeated.
CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    playbook       TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL, -- alert | condition | schedule | webhook | manual | resume
    trigger_detail TEXT    NOT NULL, -- JSON: what fired it
    labels         TEXT    NOT NULL, -- JSON object: the template labels
    value          REAL    NOT NULL,
    dry_run        INTEGER NOT NULL,
    state          TEXT    NOT NULL, -- see playbooks::RunState
    reason         TEXT,
    requested_by   TEXT    NOT NULL,
    decided_by     TEXT,
    decided_at_ms  INTEGER,
    created_ms     INTEGER NOT NULL,
    started_ms     INTEGER,
    finished_ms    INTEGER,
    expires_ms     INTEGER,
    verify         TEXT              -- JSON: the verification outcome
);
CREATE INDEX runs_by_target ON runs (playbook, target, created_ms);
CREATE INDEX runs_by_state ON runs (state);

CREATE TABLE run_steps (
    run_id      TEXT    NOT NULL,
    seq         INTEGER NOT NULL, -- order of execution within the run
    phase       TEXT    NOT NULL, -- step | rollback
    idx         INTEGER NOT NULL, -- index in the playbook's list
    name        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    state       TEXT    NOT NULL, -- running | ok | failed | dry_run | interrupted
    inputs      TEXT    NOT NULL, -- JSON: the rendered parameters
    output      TEXT,             -- JSON
    error       TEXT,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    PRIMARY KEY (run_id, seq)
);

-- Who did what: every decision a person or the engine took.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);

-- Switches that must survive a restart: global and per-playbook pause,
-- tripped playbook breakers.
CREATE TABLE flags (
    key    TEXT PRIMARY KEY,
    value  TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL
);

-- Circuit breakers served to the platform's applications.
CREATE TABLE breakers (
    name      TEXT PRIMARY KEY,
    state     TEXT    NOT NULL, -- closed | open | half_open
    since_ms  INTEGER NOT NULL,
    failures  INTEGER NOT NULL
);
CREATE TABLE breaker_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    reason     TEXT    NOT NULL
);
CREATE INDEX breaker_transitions_by_name ON breaker_transitions (name, at_ms);
