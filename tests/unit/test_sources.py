"""The pure rules of shared/sources.py and the gateway's routing: where a package's code comes from,
which transports, who gets the token, and the refs cap (the attacks themselves: tests/security)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.gateway.webhooks.changes import Push, RefChange
from services.gateway.webhooks.routing import Route, plan_builds
from shared.config.sections import WebhookConfig
from shared.sources import (
    PackageSource,
    SourceRefused,
    SourceSettings,
    configured_source,
    sends_token,
    source_candidates,
    transport_of,
)
from tests.security.sources_support import operator_config, parsed

URLS = SourceSettings(bitbucket_server_url="https://git.corp.example/").provider_urls()


def config(**webhooks):
    return parsed(operator_config({"demo": {"repository": "example/monorepo", **webhooks}}))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/a/b.git", ("https", "github.com")),
        ("https://Git.Example:8443/a/b.git", ("https", "git.example:8443")),
        ("http://127.0.0.1:9/a.git", ("http", "127.0.0.1:9")),
        ("ssh://git@github.com/a/b.git", ("ssh", "github.com")),
        ("git@github.com:a/b.git", ("ssh", "github.com")),
        ("git://host/a.git", ("git", "host")),
        ("file:///srv/a.git", ("file", "")),
        ("/srv/a.git", ("file", "")),
    ],
)
def test_transport_of(url, expected):
    assert transport_of(url) == expected


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/x", "fd::17", "ftp://host/a.git"])
def test_transports_that_run_commands_or_are_unknown_are_refused(url):
    with pytest.raises(SourceRefused):
        transport_of(url)


def test_the_token_goes_over_https_to_listed_hosts_only():
    def source(url):
        transport, host = transport_of(url)
        return PackageSource("demo", url, transport, host)

    hosts = {"github.com", "git.corp.example:8443"}
    assert sends_token(source("https://github.com/a/b.git"), hosts)
    assert sends_token(source("https://github.com:443/a/b.git"), hosts)  # host entry: any port
    assert sends_token(source("https://git.corp.example:8443/a.git"), hosts)
    assert not sends_token(source("https://git.corp.example/a.git"), hosts)  # host:port entry: exact
    assert not sends_token(source("http://github.com/a/b.git"), hosts)
    assert not sends_token(source("ssh://git@github.com/a/b.git"), hosts)
    assert not sends_token(source("https://github.com.evil.example/a.git"), hosts)


def test_token_hosts_default_to_the_provider_urls():
    assert SourceSettings().token_hosts() == {"github.com", "bitbucket.org"}
    assert SourceSettings(bitbucket_server_url="https://bb.corp:7990").token_hosts() == {
        "github.com",
        "bitbucket.org",
        "bb.corp:7990",
    }
    assert SourceSettings(git_token_hosts=" Mirror.Corp , github.com").token_hosts() == {
        "mirror.corp",
        "github.com",
    }
    assert SourceSettings(git_token_hosts="").token_hosts() == frozenset()
    with pytest.raises(ValidationError, match="without credentials"):
        SourceSettings(github_url="https://user:pw@github.com")


def test_the_configured_source():
    assert (
        configured_source(config(provider="github"), "demo", URLS).url
        == "https://github.com/example/monorepo.git"
    )
    server = parsed(operator_config({"demo": {"repository": "PROJ/Mono", "provider": "bitbucket-server"}}))
    assert configured_source(server, "demo", URLS).url == "https://git.corp.example/scm/proj/Mono.git"
    mirror = config(provider="github", clone_url="ssh://git@mirror.corp/mono.git")
    assert configured_source(mirror, "demo", URLS).url == "ssh://git@mirror.corp/mono.git"
    # No provider: a webhook route names it; an API build cannot.
    assert configured_source(config(), "demo", URLS, provider="bitbucket-cloud").url.startswith(
        "https://bitbucket.org/"
    )
    with pytest.raises(SourceRefused, match="set clone_url, or repository and provider"):
        configured_source(config(), "demo", URLS)
    assert [c.url for c in source_candidates(config(), "demo", URLS)] == [
        "https://github.com/example/monorepo.git",
        "https://bitbucket.org/example/monorepo.git",
        "https://git.corp.example/scm/example/monorepo.git",
    ]
    with pytest.raises(
        SourceRefused, match="no base URL for bitbucket-server: set KILN_BITBUCKET_SERVER_URL"
    ):
        configured_source(config(provider="bitbucket-server"), "demo", SourceSettings().provider_urls())


def test_plain_http_and_local_paths_need_the_operators_consent():
    with pytest.raises(SourceRefused, match=r"set packages\.demo\.webhooks\.allow_http: true"):
        configured_source(config(clone_url="http://git.corp/mono.git"), "demo", URLS)
    with pytest.raises(SourceRefused, match=r"set packages\.demo\.webhooks\.allow_file: true"):
        configured_source(config(clone_url="/srv/mono.git"), "demo", URLS)
    allowed = config(clone_url="http://git.corp/mono.git", allow_http=True)
    assert configured_source(allowed, "demo", URLS).transport == "http"


@pytest.mark.parametrize(
    "url",
    [
        "https://ghp_token@github.com/a/b.git",
        "https://u:p@host/a.git",
        "ssh://u:p@host/a.git",
        "-uhost",
        "a b",
    ],
)
def test_clone_url_refuses_credentials_and_argument_lookalikes(url):
    with pytest.raises(ValidationError):
        WebhookConfig(clone_url=url)


def test_ssh_login_names_and_odd_repositories():
    assert WebhookConfig(clone_url="ssh://git@host/a.git").clone_url == "ssh://git@host/a.git"
    for bad in ("a/../b", "../x", "a", "a/b/c", "a b/c"):
        with pytest.raises(ValidationError):
            WebhookConfig(repository=bad)


def test_a_delivery_starts_builds_for_at_most_max_refs():
    changes = tuple(RefChange("branch", f"b{i}", f"{i:040x}", False) for i in range(30))
    deleted = tuple(RefChange("branch", f"gone{i}", "", True) for i in range(40))
    push = Push(repository="example/monorepo", clone_urls=(), actor="x", changes=deleted + changes)
    planned, skipped = plan_builds(config(branches=["*"]), push, Route("github", URLS, max_refs=20))
    assert [p.change.name for p in planned] == [f"b{i}" for i in range(20)]
    assert (
        skipped[0].startswith("10 more ref change(s) not built")
        and "KILN_MAX_REFS_PER_DELIVERY" in skipped[0]
    )
    assert len(skipped) == 21 and skipped[-1] == "... and 21 more"  # 40 deletions, shortened


def test_the_payloads_clone_url_is_compared_on_host_and_path():
    def plan(*claimed):
        push = Push("example/monorepo", claimed, "x", (RefChange("branch", "main", "a" * 40, False),))
        return plan_builds(config(provider="github"), push, Route("github", URLS, 20))

    assert plan("https://github.com/example/monorepo.git")[0]
    assert plan("http://someone@GitHub.com/Example/Monorepo/")[0]
    planned, skipped = plan("https://github.com.evil.example/example/monorepo.git")
    assert not planned and "the payload names clone URL" in skipped[0]
