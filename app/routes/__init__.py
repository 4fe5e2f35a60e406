"""HTTP routers: thin wrappers around app.store, app.ingest and imagery."""
