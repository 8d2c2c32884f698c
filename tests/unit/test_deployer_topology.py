from services.deployer.topology import plan_topology
from tests.unit.deployer_fixtures import shop_config


def test_topology_orders_infra_then_enabled_apps_with_ports_routes_and_node_ports():
    topology = plan_topology(shop_config(), "shop")
    assert topology.namespace == "shop-staging"
    assert [(s.name, s.kind) for s in topology.services] == [
        ("mongodb", "infra"),
        ("redis", "infra"),
        ("webhook", "app"),
        ("worker", "app"),
    ]  # "reports" is behind a feature that is off
    webhook = topology.service("webhook")
    assert (webhook.port, webhook.replicas, webhook.node_port, webhook.route) == (8080, 2, 30080, "/webhook")
    assert topology.service("worker").route is None
    assert topology.service("redis").image == "redis:7"


def test_volumes_turn_underscores_into_dashes_and_mount_only_where_configured():
    topology = plan_topology(shop_config(), "shop")
    (volume,) = topology.service("worker").volumes
    assert (volume.name, volume.dns_name, volume.mount, volume.size) == (
        "shared_data",
        "shared-data",
        "/data",
        "2Gi",
    )
    assert topology.service("webhook").volumes == ()


def test_env_name_argument_overrides_the_namespace():
    assert plan_topology(shop_config(), "shop", env_name="prod").namespace == "shop-prod"
