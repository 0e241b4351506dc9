-- Named configuration recorded as events (variables, blocks, block types, concurrency limits,
-- automations): the latest body of each, by kind and name.
CREATE TABLE documents (
    kind    TEXT    NOT NULL,
    name    TEXT    NOT NULL,
    body    TEXT    NOT NULL,
    created TEXT    NOT NULL,
    updated TEXT    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
