"""A real authenticated git server for tests: `git http-backend` (git's own smart-HTTP CGI program)
behind a small threaded HTTP server that demands HTTP Basic auth, serving bare repositories made
in a temporary directory. Clients speak to it exactly as to a private GitHub/GitLab repository
over http(s): 401 + WWW-Authenticate, credentials from git's credential machinery, then the
smart protocol (v2 when the client asks for it).

With `tls=(cert, key)` it serves https (see `self_signed`; point git at the certificate with
GIT_SSL_CAINFO). `redirect_to` makes it answer every request with a 301 to that base URL.

Also: `git_argv_recorder`, a `git` first on PATH that appends its argument list to a file and
runs the real git, so a test can check what anyone could read in `ps`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REALM = "kiln test git"


@dataclass(frozen=True)
class SeenRequest:
    method: str
    target: str  # path and query, as sent
    user: str | None  # the user name of the Basic credentials, if any were sent
    authorized: bool
    password: str | None = None  # the Basic password (the token) as received, to prove it never was


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 (its own CA): (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1)).add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "git-server.crt", directory / "git-server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_bare_repository(root: Path, name: str, worktree: Path) -> Path:
    """Commit `worktree` as it is and push it to `root/name` (a bare repository); return it."""
    author = ("-c", "user.name=kiln test", "-c", "user.email=test@kiln.invalid")
    if not (worktree / ".git").exists():
        git("init", "-q", "-b", "main", cwd=worktree)
    git("add", "-A", cwd=worktree)
    git(*author, "commit", "-q", "--allow-empty", "-m", "snapshot", cwd=worktree)
    bare = root / name
    if not bare.exists():
        git("init", "-q", "--bare", "-b", "main", str(bare))
    git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=worktree)
    return bare


class AuthenticatedGitServer:
    """Serves every bare repository under `project_root` at http://127.0.0.1:<port>/<name>,
    to requests carrying Basic credentials `username`:`token` only."""

    def __init__(
        self,
        project_root: Path,
        *,
        username: str,
        token: str,
        tls: tuple[Path, Path] | None = None,
        redirect_to: str | None = None,
        host: str = "127.0.0.1",
    ):
        self.project_root = project_root
        self.username = username
        self.token = token
        self.redirect_to = redirect_to
        self.host = host  # the name in url(): 127.0.0.1 or localhost (the same listener)
        self.requests: list[SeenRequest] = []
        self.backend_errors: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, name: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{name}"

    def passwords_seen(self) -> list[str]:
        return [r.password for r in self.requests if r.password is not None]

    def __enter__(self) -> AuthenticatedGitServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def check(self, authorization: str | None) -> tuple[str | None, str | None, bool]:
        """(user name presented, password presented, whether both are the right ones)."""
        if not authorization or not authorization.startswith("Basic "):
            return None, None, False
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None, False
        return user, password, (user, password) == (self.username, self.token)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_GitHttpHandler):
            server_owner = owner

        return Handler


class _GitHttpHandler(BaseHTTPRequestHandler):
    server_owner: AuthenticatedGitServer
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args) -> None:
        pass  # requests are recorded in server_owner.requests instead

    def _serve(self) -> None:
        owner = self.server_owner
        body = self._read_body()
        user, password, authorized = owner.check(self.headers.get("Authorization"))
        owner.record(SeenRequest(self.command, self.path, user, authorized, password))
        if owner.redirect_to is not None:
            self._reply(301, b"moved\n", {"Location": owner.redirect_to.rstrip("/") + self.path})
            return
        if not authorized:
            self._reply(401, b"authentication required\n", {"WWW-Authenticate": f'Basic realm="{REALM}"'})
            return
        target = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(owner.project_root),
            "GIT_PROJECT_ROOT": str(owner.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(owner.port),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(target.path),
            "QUERY_STRING": target.query,
            "REMOTE_USER": user or "",
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        if done.stderr:
            owner.backend_errors.append(done.stderr.decode(errors="replace"))
        head, separator, payload = done.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, separator, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        self._reply(status, payload, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # the empty line after the last chunk
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def git_argv_recorder(directory: Path) -> tuple[Path, Path]:
    """A directory holding a `git` that logs its argv (one line per run) and runs the real git.

    Put the directory first on PATH; returns (bin directory, log file)."""
    real_git = shutil.which("git")
    assert real_git, "git is not installed"
    bin_dir, log = directory / "bin", directory / "git-argv.log"
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real_git}" "$@"\n')
    wrapper.chmod(0o755)
    log.touch()
    return bin_dir, log
