"""A config exercising every scaffold feature: infra services, node port, `_` in a volume name,
replicas, env overrides. Shared by the deployer's unit tests."""

from __future__ import annotations

from shared.config import parse_config

CONFIG_TEXT = """
base:
  services:
    redis: {image: "redis:7", port: 6379, command: [redis-server, --appendonly, "yes"]}
    mongodb: {image: "mongo:7", port: 27017, env: {MONGO_INITDB_DATABASE: shop}}
factories:
  core: {path: core}
  webhook: {path: webhook}
tiers:
  minimal: {requirements: []}
packages:
  shop:
    factories: [core, webhook]
    keys: {dir: /srv/kiln-keys/shop}
    services:
      webhook:
        command: [python3, -m, webhook.server]
        port: 8080
        node_port: 30080
        health: /healthz
        factories: [core, webhook]
        tier: minimal
        replicas: 2
        env: {LOG_LEVEL: debug}
      worker:
        command: [python3, -m, core.scheduler]
        factories: [core]
        tier: minimal
        env: {STORAGE_DIR: /data}
      reports:
        command: [python3, -m, core.report]
        tier: minimal
        feature: reports
    features: {reports: false}
    deployment:
      substrate: k8s
      registry: {host: "registry.example.com:5000", project: kiln, mirrors: ["https://mirror.example.com"]}
      k3s: {namespace_env: staging}
      volumes:
        shared_data: {mount: /data, size: 2Gi, services: [worker]}
"""


def shop_config(env: dict[str, str] | None = None):
    return parse_config(CONFIG_TEXT, env or {}, source_name="shop.yaml")
