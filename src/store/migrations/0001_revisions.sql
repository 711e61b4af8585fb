-- The registry's revisions: a linear history, each revision the child of the one before.
-- A commit inserts number = parent + 1, so two commits on the same parent cannot both land
-- (the primary key and the unique parent refuse the second).
CREATE TABLE contextgate_revisions (
    number    BIGINT PRIMARY KEY CHECK (number >= 1),
    parent    BIGINT UNIQUE REFERENCES contextgate_revisions (number),
    -- Who: "operator", "context <name>", or what `registry push --author` said.
    author    TEXT NOT NULL,
    -- The gateway instance (or "cli") that committed it.
    instance  TEXT NOT NULL,
    committed TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- One line: what the change was ("register orders/OrderPlaced@2", "push from ci").
    summary   TEXT NOT NULL,
    -- [{path, change: added|modified|removed, digest}]
    changes   JSONB NOT NULL,
    -- The compatibility findings against the parent (`check --against` of the parent).
    findings  JSONB NOT NULL,
    -- The SHA-256 of the whole registry as the loader computes it.
    digest    TEXT NOT NULL,
    CHECK ((number = 1 AND parent IS NULL) OR parent = number - 1)
);

-- Every file's content once, by its SHA-256.
CREATE TABLE contextgate_blobs (
    digest  TEXT PRIMARY KEY,
    content BYTEA NOT NULL
);

-- Each revision's files, by path and content digest.
CREATE TABLE contextgate_files (
    revision BIGINT NOT NULL REFERENCES contextgate_revisions (number),
    path     TEXT NOT NULL,
    digest   TEXT NOT NULL REFERENCES contextgate_blobs (digest),
    PRIMARY KEY (revision, path)
);
