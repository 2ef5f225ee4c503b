-- Fixture: a state database at schema version 2, as written by the second release.
-- Generated once (the v1 fixture, migration 2, an image pause, a pruned build and node
-- attributes); never regenerate it: tests/state_store.rs opens it with the current code to
-- prove the upgrade path.
CREATE TABLE config_revisions (
    id           INTEGER NOT NULL PRIMARY KEY,
    revision     TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    errors       TEXT,
    attempted_at INTEGER NOT NULL,
    applied_at   INTEGER
);
INSERT INTO config_revisions VALUES(1,'3f786850e387550fdab836ed7e6dc881de23001b','https://git.example/ci/config nodepool.yaml','ok',NULL,1714557600,1714557600);
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
, pruned_formats TEXT NOT NULL DEFAULT '[]');
INSERT INTO image_builds VALUES('0000000001','ubuntu-noble','ready',1714550000,'["qcow2"]','nb01',1714548000,1714550000,0,'/var/log/nodepool/ubuntu-noble-0000000001.log',2147483648,'["qcow2"]');
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
INSERT INTO image_uploads VALUES('0000000001','0000000001','ubuntu-noble','rax-dfw','qcow2','9f0c0000-0000-4000-8000-00000000000a','ubuntu-noble-1714548000','ready',1714551000,1714550100,1,NULL);
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
INSERT INTO journal VALUES(1,'plan-0001',1,'create-server','provider.rax-dfw.node.0000000002','label ubuntu-noble below min-ready','{"flavor":"m1.large"}','running',NULL,1714557655,1714557656,NULL);
CREATE TABLE leak_sightings (
    provider    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, external_id)
);
INSERT INTO leak_sightings VALUES('rax-dfw','floating_ip','198.51.100.4',1714557000,1714557600,2);
CREATE TABLE lease (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    holder      TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE meta (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    lineage TEXT    NOT NULL,
    serial  INTEGER NOT NULL
);
INSERT INTO meta VALUES(1,'6b1f2c0e-8a8e-4d7e-9c61-2f0d6f3b7a10',18);
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
INSERT INTO node_requests VALUES('0000000001','fulfilled','["ubuntu-noble"]','zuul-scheduler',100,'openstack',1714557640,1714557710,NULL,'["0000000002"]');
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
, attributes TEXT NOT NULL DEFAULT '{}');
INSERT INTO nodes VALUES('0000000001','rax-dfw','main','ubuntu-noble','np0000000001','ready',1714557700,1714557650,'5c1e7f5a-0000-4000-8000-000000000001','203.0.113.7','10.0.0.7','2001:db8::7','203.0.113.7','DFW','nova','rax',1,NULL,NULL,NULL,NULL,NULL,'zuul','ssh',22,'["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture"]','/usr/bin/python3','sh','ubuntu-noble','0000000001','9f0c0000-0000-4000-8000-00000000000a','m1.large',8,8192,1,NULL,'{"executor-zone":"dfw"}');
INSERT INTO nodes VALUES('0000000002','rax-dfw','main','ubuntu-noble','np0000000002','hold',1714557800,1714557660,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,3,'0000000001','tenant/project/job','debugging a flaky test',86400,'held for jdoe',NULL,NULL,NULL,'[]',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'timeout waiting for ssh','{}');
CREATE TABLE schema_version (
    version     INTEGER NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
);
INSERT INTO schema_version VALUES(1,'initial schema: nodes, requests, images, journal, leases',1714557600);
INSERT INTO schema_version VALUES(2,'image pauses; formats pruned from a build''s files; node attributes',1717236000);
CREATE TABLE sequences (
    name       TEXT    NOT NULL PRIMARY KEY,
    next_value INTEGER NOT NULL
);
INSERT INTO sequences VALUES('node',3);
INSERT INTO sequences VALUES('request',2);
INSERT INTO sequences VALUES('build',2);
INSERT INTO sequences VALUES('upload',2);
INSERT INTO sequences VALUES('journal',2);
INSERT INTO sequences VALUES('config_revision',2);
CREATE TABLE image_pauses (
    image_name TEXT    NOT NULL PRIMARY KEY,
    paused_at  INTEGER NOT NULL,
    reason     TEXT
);
INSERT INTO image_pauses VALUES('ubuntu-jammy',1717236000,'kernel regression');
CREATE INDEX nodes_by_provider ON nodes (
    provider, id, pool, label, hostname, state, state_time, server_id, allocated_request,
    hold_expiration, image_name, upload_id, launch_attempts, cores, ram, instances
);
CREATE INDEX nodes_by_state_label ON nodes (state, label, id);
CREATE INDEX nodes_by_allocated_request ON nodes (allocated_request);
CREATE INDEX node_requests_by_state_priority ON node_requests (state, priority, created_at, id);
CREATE INDEX image_builds_by_image ON image_builds (image_name, id);
CREATE INDEX image_uploads_by_image_provider ON image_uploads (image_name, provider, id);
CREATE INDEX image_uploads_by_provider ON image_uploads (provider, id);
CREATE INDEX image_uploads_by_build ON image_uploads (build_id);
CREATE INDEX config_revisions_by_applied ON config_revisions (applied_at, id);
CREATE INDEX journal_by_status ON journal (status, id);
