"""storage: a tiny content-addressed file store."""
