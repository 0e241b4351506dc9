"""What the HTTP API and the CLI both show of the store: a run's detail and the dashboard's
counts. Below both, so neither depends on the other."""
