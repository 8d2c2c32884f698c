"""core: what every Axion-like service shares: its mounted config, JSON, self-checks, a stop flag."""
