"""storage: content-addressed blobs and a small record store (sqlite, standard library)."""
