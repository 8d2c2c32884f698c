"""Deployer: gates a build on pushed and scanned images, plans the topology, generates the
scaffold (Helm chart, compose file, Caddyfile, registries.yaml, supervisor sections), deploys by
substrate, verifies health and rolls back. See docs/deployer.md."""
