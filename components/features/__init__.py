"""Feature engineering on Feast: ingest sources, apply the repo, materialize, look up."""
