-- Items owned by users. Every read and write names the owner (`WHERE id = $1 AND owner_id = $2`);
-- the composite index serves both that lookup and the owner's newest-first listing.
CREATE TABLE items (
    id          TEXT PRIMARY KEY,           -- UUIDv7: id order is creation order
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX items_by_owner ON items (owner_id, id);
