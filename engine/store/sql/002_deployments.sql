-- Deployments: the projection of each deployment stream's latest definition.
CREATE TABLE deployments (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    flow_name        TEXT NOT NULL,
    deployment_name  TEXT NOT NULL,
    entrypoint       TEXT NOT NULL,
    working_dir      TEXT NOT NULL,
    queue            TEXT NOT NULL,
    parameters       TEXT NOT NULL,
    parameter_schema TEXT NOT NULL,
    tags             TEXT NOT NULL,
    description      TEXT,
    created          TEXT NOT NULL,
    updated          TEXT NOT NULL,
    version          INTEGER NOT NULL
);
