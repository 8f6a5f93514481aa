-- Webhooks in: deliveries already acted on (Alertmanager alert instances,
-- PagerDuty event ids) and Slack request signatures already used, so a
-- redelivery or a replay changes nothing. Pruned by age.
CREATE TABLE hook_deliveries (
    source TEXT    NOT NULL, -- alertmanager | pagerduty | slack
    key    TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL, -- last seen
    PRIMARY KEY (source, key)
);
CREATE INDEX hook_deliveries_by_age ON hook_deliveries (source, at_ms);
