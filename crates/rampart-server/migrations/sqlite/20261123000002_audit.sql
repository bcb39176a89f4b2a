-- Security events, append-only and tamper-evident: each row's hash covers the previous row's
-- hash and its own fields, so editing, deleting or reordering rows breaks the chain
-- (`rampart audit-log verify`). The triggers stop the application itself from changing rows.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    ip          TEXT,
    request_id  TEXT,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
