"""telemetry: the monitor service: counters, latency percentiles and Prometheus text."""
