"""A build's source on git: a local directory as is, or a shallow fetch of one commit.

Used by the compiler (the source it compiles) and the deployer (the docs stage builds the
repository's docs). With a SourceGuard (shared/sources.py) a fetch happens only when the URL is
the package's configured source; git may then use only that URL's transport, follows no
redirect, and gets the token only over https to a host in KILN_GIT_TOKEN_HOSTS.

The token reaches git only through GIT_ASKPASS: a script that prints an environment variable
set for the git child process alone. It is never part of a URL or an argument, so it cannot
show up in `ps`, in git's messages, in `.git/config`, in logs or in events. Git's messages are
redacted anyway (a user may paste `https://user:token@host` as the repository URL).
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from pydantic import SecretStr

from shared.events.build import Source
from shared.logging import REDACT, Redactor
from shared.platforms import branch_of, is_branch_ref, ref_of
from shared.sources import PackageSource, SourceGuard, SourceRefused, sends_token, transport_of

_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$KILN_GIT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$KILN_GIT_ASKPASS_TOKEN" ;;
esac
"""
# Without a guard (tests, tools): the transports that are encrypted and authenticated. ext:: and
# fd:: (they run commands) are never allowed: GIT_ALLOW_PROTOCOL names one transport per fetch.
SAFE_TRANSPORTS = ("https", "ssh")
_NO_REDIRECTS = ("-c", "http.followRedirects=false")
_MESSAGE_LINES = 15


class FetchFailed(Exception):
    """The source could not be fetched; the message says why (redacted) and what to do."""


# How git and the big hosts word "who are you?" and "not for you" (lower case).
_AUTH_FAILED = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "invalid username or password",
    "http basic: access denied",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "permission denied (publickey)",
)

_NOT_FOUND = ("repository not found", "the requested url returned error: 404")

Runner = Callable[..., subprocess.CompletedProcess]


class GitSource:
    def __init__(
        self,
        *,
        token: SecretStr | None = None,
        username: str = "x-access-token",
        timeout_s: float = 300,
        run: Runner = subprocess.run,
        token_hosts: Collection[str] = (),
        guard: SourceGuard | None = None,
        transports: Collection[str] = SAFE_TRANSPORTS,
    ):
        self._token = token.get_secret_value() if token is not None else ""
        self._username = username
        self._timeout_s = timeout_s
        self._run = run
        self._token_hosts = frozenset(token_hosts)
        self._guard = guard
        self._transports = frozenset(transports)
        self._redact = Redactor([self._token])

    def fetch(self, source: Source, work_dir: Path, *, package: str | None = None) -> Path:
        """The tree at the source's commit. `package`: the build's package, whose configured
        source (guard) the URL must be."""
        if source.path:
            if self._guard is not None:
                try:
                    self._guard.check_path(package, source.path)
                except SourceRefused as exc:
                    raise FetchFailed(str(exc)) from None
            root = Path(source.path).expanduser().resolve()
            if not root.is_dir():
                raise FetchFailed(f"source path {source.path} is not a directory")
            return root  # used read-only: the compile reads it, outputs go to work_dir
        if not source.repo_url:
            raise FetchFailed("the build names no source: set source.repo_url (or source.path)")
        for value in (source.repo_url, source.commit, source.ref):
            if value.startswith("-"):
                raise FetchFailed(f"refusing {self.clean(value)!r}: git arguments may not start with '-'")
        resolved = self.resolve(source.repo_url, package)
        dest = work_dir / "src"
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="kiln-askpass-") as helper_dir:
            env = self._environment(Path(helper_dir), resolved)
            self._git(env, "init", "-q", str(dest))
            try:
                self._fetch(env, dest, source)
            except FetchFailed as failed:
                raise FetchFailed(self._explain(str(failed), resolved)) from None
            self._git(env, "-C", str(dest), "checkout", "-q", "--detach", "FETCH_HEAD")
        return dest

    def fetch_history(
        self, dest: Path, source: Source, branches: Sequence[str], *, package: str | None
    ) -> list[str]:
        """Deepen a checkout made by `fetch` to the commit graph of its commit and of `branches`
        (as `origin/<branch>`), without file contents (`--filter=tree:0`; a server without
        partial-clone support sends them anyway), so `version_for_ref` can find where the
        build's branch forked. Returns the branches the remote has; FetchFailed on git errors."""
        if source.path or not source.repo_url or not branches:
            return []
        names = [b for b in branches if not b.startswith("-")]
        resolved = self.resolve(source.repo_url, package)
        with tempfile.TemporaryDirectory(prefix="kiln-askpass-") as helper_dir:
            env = self._environment(Path(helper_dir), resolved)
            listed = self._git(env, "ls-remote", "--heads", "--", source.repo_url, *names)
            refs = [line.split("\t", 1)[-1] for line in listed.splitlines()]
            present = {branch_of(ref) for ref in refs if is_branch_ref(ref)}
            found = [name for name in names if name in present]
            if not found:
                return []
            refspecs = [f"+{ref_of(name)}:refs/remotes/origin/{name}" for name in found]
            shallow = (dest / ".git" / "shallow").exists()
            self._git(
                env, "-C", str(dest), "fetch", "-q", "--no-tags", "--filter=tree:0",
                *(["--unshallow"] if shallow else []), "--", source.repo_url, *refspecs,
            )  # fmt: skip
        return found

    def resolve(self, repo_url: str, package: str | None) -> PackageSource:
        """The checked source: the package's configured one (guard), or any URL on a safe transport."""
        try:
            if self._guard is not None:
                return self._guard.check(package, repo_url)
            transport, host = transport_of(repo_url)
        except SourceRefused as exc:
            raise FetchFailed(str(exc)) from None
        if transport not in self._transports:
            raise FetchFailed(
                f"{self.clean(repo_url)!r}: transport {transport} is not allowed here "
                f"(allowed: {', '.join(sorted(self._transports))})"
            )
        return PackageSource(package=package or "", url=repo_url, transport=transport, host=host)

    def default_branch(self, source: PackageSource) -> str | None:
        """The branch the source's HEAD names (`refs/heads/main`), or None when it names none."""
        with tempfile.TemporaryDirectory(prefix="kiln-askpass-") as helper_dir:
            env = self._environment(Path(helper_dir), source)
            out = self._git(env, "ls-remote", "--symref", "--", source.url, "HEAD")
        for line in out.splitlines():
            target, _, name = line.partition("\t")
            if name == "HEAD" and target.startswith("ref: ") and is_branch_ref(target.removeprefix("ref: ")):
                return target.removeprefix("ref: ")
        return None

    def ls_remote(self, source: PackageSource, ref: str) -> str | None:
        """The commit `ref` points to at the source (no token: the gateway holds none), or None
        when the ref does not exist. Raises FetchFailed when the source cannot be asked."""
        with tempfile.TemporaryDirectory(prefix="kiln-askpass-") as helper_dir:
            env = self._environment(Path(helper_dir), source)
            out = self._git(env, "ls-remote", "--", source.url, ref)
        for line in out.splitlines():
            commit, _, name = line.partition("\t")
            if name == ref:
                return commit
        return None

    def offers_token(self, source: PackageSource) -> bool:
        return bool(self._token) and sends_token(source, self._token_hosts)

    def _explain(self, message: str, source: PackageSource) -> str:
        """Put what to do in front of git's message when credentials are the likely cause."""
        repository = self.clean(source.url)
        cause = _cause(message)
        if cause == "credentials":
            if self._token and not self.offers_token(source):
                hosts = ", ".join(sorted(self._token_hosts)) or "none"
                hint = (
                    f"{repository} requires credentials; KILN_GIT_TOKEN is sent only over https to the "
                    f"hosts in KILN_GIT_TOKEN_HOSTS (now: {hosts}), and {source.host or 'this path'} over "
                    f"{source.transport} is not one of them: add the host there if it should get the token"
                )
            elif not self._token:
                hint = (
                    f"{repository} requires credentials and none are configured: set KILN_GIT_TOKEN "
                    f"on the service that fetches it (compiler, deployer) to a token that can read it "
                    f"(sent with user name {self._username!r}, KILN_GIT_USERNAME)"
                )
            else:
                hint = (
                    f"{repository} refused the token in KILN_GIT_TOKEN (user name {self._username!r}, "
                    "KILN_GIT_USERNAME): check that the token is valid, not expired, and can read this "
                    "repository (Bitbucket wants KILN_GIT_USERNAME=x-token-auth)"
                )
        elif cause == "not found":
            hint = (
                f"{repository} was not found: check source.repo_url; a private repository also looks "
                "missing to a token without access to it (KILN_GIT_TOKEN)"
            )
        else:
            return message
        return f"{hint}; {message}"

    def _fetch(self, env: dict[str, str], dest: Path, source: Source) -> None:
        wanted = source.commit or source.ref or "HEAD"
        try:
            self._git(env, *self._fetch_args(dest), source.repo_url, wanted)
            return
        except FetchFailed as by_commit:
            # Some servers refuse to fetch by commit id; the branch, if it still points there, will do.
            if not (source.commit and source.ref) or _cause(str(by_commit)):
                raise  # no ref to fall back on, or a refusal the ref would meet as well
            first_error = by_commit
        self._git(env, *self._fetch_args(dest), source.repo_url, source.ref)
        head = self._git(env, "-C", str(dest), "rev-parse", "FETCH_HEAD").strip()
        if not head.startswith(source.commit):
            raise FetchFailed(
                f"{first_error}; and {source.ref} is now at {head[:12]}, not the pushed commit "
                f"{source.commit[:12]} (the branch moved on: build the newer commit)"
            )

    @staticmethod
    def _fetch_args(dest: Path) -> list[str]:
        return ["-C", str(dest), "fetch", "-q", "--depth", "1", "--no-tags", "--"]

    def _environment(self, helper_dir: Path, source: PackageSource) -> dict[str, str]:
        # The child's environment: inherit PATH, HOME and proxies, add only what git needs here;
        # none of the service's own KILN_* settings (secrets among them), no askpass of the host.
        skip = ("GIT_ASKPASS", "SSH_ASKPASS")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k not in skip}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            # Only this URL's transport: no redirect or submodule-like detour to another one.
            GIT_ALLOW_PROTOCOL=source.transport,
            GIT_CONFIG_NOSYSTEM="1",
        )
        if self.offers_token(source):
            script = helper_dir / "askpass.sh"
            script.write_text(_ASKPASS)
            script.chmod(stat.S_IRWXU)
            env.update(
                GIT_ASKPASS=str(script),
                KILN_GIT_ASKPASS_USERNAME=self._username,
                KILN_GIT_ASKPASS_TOKEN=self._token,
            )
        return env

    def _git(self, env: dict[str, str], *args: str) -> str:
        # credential.helper= : a helper configured on this host must not supply or store anything.
        # http.followRedirects=false: a redirect would take the token to a host nobody listed.
        command = ["git", "-c", "credential.helper=", "-c", "core.askPass=", *_NO_REDIRECTS, *args]
        try:
            done = self._run(
                command, env=env, capture_output=True, text=True, timeout=self._timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise FetchFailed(f"git {args[2] if args[0] == '-C' else args[0]} timed out") from None
        except OSError as exc:
            raise FetchFailed(f"cannot run git: {exc}") from None
        if done.returncode != 0:
            what = args[2] if args[0] == "-C" else args[0]
            lines = (done.stderr or done.stdout or "").strip().splitlines()[-_MESSAGE_LINES:]
            message = self.clean("\n".join(lines)) or "no message"
            raise FetchFailed(f"git {what} failed (exit {done.returncode}): {message}")
        return done.stdout or ""

    def clean(self, text: str) -> str:
        return REDACT(self._redact(text))


def _cause(git_message: str) -> str | None:
    lowered = git_message.lower()
    if any(sign in lowered for sign in _AUTH_FAILED):
        return "credentials"
    if any(sign in lowered for sign in _NOT_FOUND):
        return "not found"
    return None
