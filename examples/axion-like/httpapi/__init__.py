"""httpapi: the small HTTP layer every service answers on: /healthz, /status (the JSON harness), routes."""
