-- Schema version 1 of the nodepool-rs state store.
--
-- Released migrations are frozen: never edit this file once a build that contains it has
-- shipped; add schema_v2.sql and a MIGRATIONS entry instead. Keep the SQL portable (plain
-- TEXT/INTEGER columns, no AUTOINCREMENT, no WITHOUT ROWID, no partial indexes) so that a
-- shared database can replace SQLite later. All times are integer unix seconds (UTC).

-- One row: the lineage (a UUID created with the database) and the serial, bumped by every
-- write transaction that changes state. A saved plan records both; applying it to a
-- different lineage or a later serial is refused as stale.
CREATE TABLE meta (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    lineage TEXT    NOT NULL,
    serial  INTEGER NOT NULL
);

-- Monotonic id sequences (portable replacement for AUTOINCREMENT / SERIAL).
CREATE TABLE sequences (
    name       TEXT    NOT NULL PRIMARY KEY,
    next_value INTEGER NOT NULL
);
INSERT INTO sequences (name, next_value) VALUES ('node', 1);
INSERT INTO sequences (name, next_value) VALUES ('request', 1);
INSERT INTO sequences (name, next_value) VALUES ('build', 1);
INSERT INTO sequences (name, next_value) VALUES ('upload', 1);
INSERT INTO sequences (name, next_value) VALUES ('journal', 1);
INSERT INTO sequences (name, next_value) VALUES ('config_revision', 1);

CREATE TABLE nodes (
    id                TEXT    NOT NULL PRIMARY KEY,
    provider          TEXT    NOT NULL,
    pool              TEXT    NOT NULL,
    label             TEXT    NOT NULL,
    hostname          TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    state_time        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    server_id         TEXT,
    public_ipv4       TEXT,
    private_ipv4      TEXT,
    public_ipv6       TEXT,
    interface_ip      TEXT,
    region            TEXT,
    az                TEXT,
    cloud             TEXT,
    launch_attempts   INTEGER NOT NULL,
    allocated_request TEXT,
    hold_job          TEXT,
    hold_reason       TEXT,
    hold_expiration   INTEGER,
    comment           TEXT,
    username          TEXT,
    connection_type   TEXT,
    connection_port   INTEGER,
    host_keys         TEXT    NOT NULL,
    python_path       TEXT,
    shell_type        TEXT,
    image_name        TEXT,
    upload_id         TEXT,
    image_id          TEXT,
    flavor            TEXT,
    cores             INTEGER,
    ram               INTEGER,
    instances         INTEGER,
    last_error        TEXT
);
-- Covering index for the planner's per-provider pass (NodeSummary): an index range scan,
-- no table lookups. Keep its column list equal to node::SUMMARY_COLUMNS.
CREATE INDEX nodes_by_provider ON nodes (
    provider, id, pool, label, hostname, state, state_time, server_id, allocated_request,
    hold_expiration, image_name, upload_id, launch_attempts, cores, ram, instances
);
CREATE INDEX nodes_by_state_label ON nodes (state, label, id);
CREATE INDEX nodes_by_allocated_request ON nodes (allocated_request);

CREATE TABLE node_requests (
    id              TEXT    NOT NULL PRIMARY KEY,
    state           TEXT    NOT NULL,
    labels          TEXT    NOT NULL,
    requestor       TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    tenant          TEXT,
    created_at      INTEGER NOT NULL,
    state_time      INTEGER NOT NULL,
    declined_reason TEXT,
    nodes           TEXT    NOT NULL
);
CREATE INDEX node_requests_by_state_priority ON node_requests (state, priority, created_at, id);

CREATE TABLE image_builds (
    id          TEXT    NOT NULL PRIMARY KEY,
    image_name  TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    state_time  INTEGER NOT NULL,
    formats     TEXT    NOT NULL,
    builder     TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    exit_code   INTEGER,
    log_path    TEXT,
    size_bytes  INTEGER
);
CREATE INDEX image_builds_by_image ON image_builds (image_name, id);

CREATE TABLE image_uploads (
    id            TEXT    NOT NULL PRIMARY KEY,
    build_id      TEXT    REFERENCES image_builds (id),
    image_name    TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    format        TEXT,
    external_id   TEXT,
    external_name TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    state_time    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT
);
CREATE INDEX image_uploads_by_image_provider ON image_uploads (image_name, provider, id);
CREATE INDEX image_uploads_by_provider ON image_uploads (provider, id);
CREATE INDEX image_uploads_by_build ON image_uploads (build_id);

CREATE TABLE config_revisions (
    id           INTEGER NOT NULL PRIMARY KEY,
    revision     TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    errors       TEXT,
    attempted_at INTEGER NOT NULL,
    applied_at   INTEGER
);
CREATE INDEX config_revisions_by_applied ON config_revisions (applied_at, id);

CREATE TABLE journal (
    id          INTEGER NOT NULL PRIMARY KEY,
    plan_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    UNIQUE (plan_id, seq)
);
CREATE INDEX journal_by_status ON journal (status, id);

CREATE TABLE leak_sightings (
    provider    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, external_id)
);

-- At most one row: the writer lease (see lease.rs). `token` identifies the holder's guard.
CREATE TABLE lease (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    holder      TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
