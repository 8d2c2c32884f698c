"""importers: the import service: contacts from CSV (standard library) and XML (lxml, tier `io`)."""
