-- Named configuration recorded as events (variables, blocks, block types, concurrency limits,
-- automations): the latest body of each, by kind and name.
CREATE TABLE documents (
    kind    TEXT COLLATE "C" NOT NULL,
    name    TEXT COLLATE "C" NOT NULL,
    body    TEXT    NOT NULL,
    created TEXT COLLATE "C" NOT NULL,
    updated TEXT COLLATE "C" NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
