"""reporting: the report service: the self-check harness as JSON, HTML and a PNG chart."""
