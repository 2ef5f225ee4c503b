-- Schema version 2: operator pauses of image builds, formats pruned from a build's files, and
-- the attributes a node was launched with.

-- An image paused with `nodepool image-pause` (the config's `pause: true` is the other way):
-- no build and no upload of it is planned until `nodepool image-unpause`.
CREATE TABLE image_pauses (
    image_name TEXT    NOT NULL PRIMARY KEY,
    paused_at  INTEGER NOT NULL,
    reason     TEXT
);

-- Formats whose local files were removed after every provider had the build
-- (`delete-after-upload`, minus `keep-formats`); JSON list. `formats` keeps what was built.
ALTER TABLE image_builds ADD COLUMN pruned_formats TEXT NOT NULL DEFAULT '[]';

-- The pool's `node-attributes` when the node was launched (JSON object).
ALTER TABLE nodes ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
