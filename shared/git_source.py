"""A build's source on git: a local directory as is, or a shallow fetch of one commit.

Used by the compiler (the source it compiles) and the deployer (the docs stage builds the
repository's docs).

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
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from shared.events.build import Source
from shared.logging import REDACT, Redactor

_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$KILN_GIT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$KILN_GIT_ASKPASS_TOKEN" ;;
esac
"""
# ext:: and fd:: run arbitrary commands; a build request must never choose those.
_ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
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
    ):
        self._token = token.get_secret_value() if token is not None else ""
        self._username = username
        self._timeout_s = timeout_s
        self._run = run
        self._redact = Redactor([self._token])

    def fetch(self, source: Source, work_dir: Path) -> Path:
        if source.path:
            root = Path(source.path).expanduser().resolve()
            if not root.is_dir():
                raise FetchFailed(f"source path {source.path} is not a directory")
            return root  # used read-only: the compile reads it, outputs go to work_dir
        if not source.repo_url:
            raise FetchFailed("the build names no source: set source.repo_url (or source.path)")
        for value in (source.repo_url, source.commit, source.ref):
            if value.startswith("-"):
                raise FetchFailed(f"refusing {self.clean(value)!r}: git arguments may not start with '-'")
        dest = work_dir / "src"
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="kiln-askpass-") as helper_dir:
            env = self._environment(Path(helper_dir))
            self._git(env, "init", "-q", str(dest))
            try:
                self._fetch(env, dest, source)
            except FetchFailed as failed:
                raise FetchFailed(self._explain(str(failed), source.repo_url)) from None
            self._git(env, "-C", str(dest), "checkout", "-q", "--detach", "FETCH_HEAD")
        return dest

    def _explain(self, message: str, repo_url: str) -> str:
        """Put what to do in front of git's message when credentials are the likely cause."""
        repository = self.clean(repo_url)
        cause = _cause(message)
        if cause == "credentials":
            if not self._token:
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

    def _environment(self, helper_dir: Path) -> dict[str, str]:
        # The child's environment: inherit PATH, HOME and proxies, add only what git needs here.
        env = dict(os.environ)
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ALLOW_PROTOCOL=_ALLOWED_PROTOCOLS,
            GIT_CONFIG_NOSYSTEM="1",
        )
        if self._token:
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
        command = ["git", "-c", "credential.helper=", "-c", "core.askPass=", *args]
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
