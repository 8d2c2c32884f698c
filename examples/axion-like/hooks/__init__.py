"""hooks: the webhook service: signed push notifications in, envelopes out."""
