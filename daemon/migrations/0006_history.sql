-- Downsampled history of the series forecasts and autoscalers learn from, keyed by
-- the PromQL expression (a changed expression starts a new history) and the grid
-- step. Bounded: the forecast stage prunes each (series, step) by age.
CREATE TABLE history (
    series  TEXT    NOT NULL,
    step_ms INTEGER NOT NULL,
    ts_ms   INTEGER NOT NULL, -- end of the bucket
    value   REAL    NOT NULL,
    PRIMARY KEY (series, step_ms, ts_ms)
) WITHOUT ROWID;

-- The last fitted model per forecast or autoscaler, so a restart does not throw
-- away training (homeostat-ml's serde JSON).
CREATE TABLE models (
    name          TEXT    PRIMARY KEY, -- forecast:<name> | autoscale:<name>
    trained_at_ms INTEGER NOT NULL,
    body          TEXT    NOT NULL
);
