"""The REST API: health, builds (read, trigger, cancel, replay), live streams, subscriptions."""
