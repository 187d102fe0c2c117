"""Real backing services for tests: Redis, Cerbos and an OIDC provider on free loopback ports.

No fakes: every service is the real program, started as a child process that logs to a file in
`work_dir` (never to the pytest terminal). Readiness waits are bounded; on timeout or early exit
the error carries the tail of the process log. Every started process is stopped at interpreter
exit, even when a test crashes, and `restart()` reuses the same ports and files, so fault tests
can kill a service and bring it back where clients expect it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 40

_running: set[ManagedProcess] = set()


class ServiceError(RuntimeError):
    """A service could not be found, started or made ready."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _npm_cerbos_path() -> Path:
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    name = f"cerbos-linux-{arch}"
    return REPO_ROOT / ".tools" / "cerbos" / "node_modules" / "@cerbos" / name / name


def cerbos_binary() -> Path:
    """$CERBOS_BIN, else .tools/bin/cerbos, else the npm package's binary, else `cerbos` on PATH."""
    candidates: list[Path] = []
    if env := os.environ.get("CERBOS_BIN"):
        candidates.append(Path(env))
    candidates += [REPO_ROOT / ".tools" / "bin" / "cerbos", _npm_cerbos_path()]
    if on_path := shutil.which("cerbos"):
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(
        "Cerbos binary not found (looked at $CERBOS_BIN, .tools/bin/cerbos, the npm package "
        "under .tools/cerbos, and PATH). Run `make setup` (scripts/setup.sh) to install it."
    )


def redis_binary() -> Path:
    """$REDIS_SERVER_BIN, else `redis-server` on PATH."""
    found = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not found or not os.access(found, os.X_OK):
        raise ServiceError(
            "redis-server not found on PATH. Run `make setup` (scripts/setup.sh), "
            "or install it: `apt-get install redis-server`."
        )
    return Path(found)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ManagedProcess:
    """One child process with a log file, a readiness probe and a bounded lifecycle."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        work_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.work_dir = work_dir
        self.cwd = cwd or work_dir
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout = ready_timeout
        self.log_path = work_dir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def is_ready(self) -> bool:
        """One readiness probe; subclasses override. Must not raise."""
        return True

    def start(self) -> None:
        """Start the process and block until it is ready (or raise ServiceError)."""
        if self.is_running:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not theirs
            )
        _running.add(self)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._forget()
                raise ServiceError(
                    f"{self.name} exited with code {code} before it was ready; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.is_ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceError(
            f"{self.name} was not ready within {self.ready_timeout:.0f} s; "
            f"log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; wait for the process either way."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL without grace, as a crash would (for fault tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self._forget()

    def restart(self) -> None:
        """Stop (if running) and start again with the same ports, files and arguments."""
        self.stop()
        self.start()

    def _forget(self) -> None:
        self._proc = None
        _running.discard(self)


def start_all(processes: Sequence[ManagedProcess]) -> None:
    """Start processes concurrently (each start blocks until ready); if one fails, stop all."""
    with ThreadPoolExecutor(max_workers=max(1, len(processes))) as pool:
        futures = [pool.submit(p.start) for p in processes]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        stop_all(processes)
        raise failed[0]


def stop_all(processes: Sequence[ManagedProcess]) -> None:
    for process in processes:
        with contextlib.suppress(Exception):
            process.stop()


@atexit.register
def _stop_all() -> None:
    for process in list(_running):
        with contextlib.suppress(Exception):
            process.stop()


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            # trust_env=False: never route a loopback probe through an environment proxy
            return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


class RedisService(ManagedProcess):
    """redis-server on 127.0.0.1:<port>; its files live in `work_dir`, named by port.

    With `appendonly=True` every write is fsynced before it is acknowledged, so a key written
    before `kill()` (SIGKILL) is there again after `restart()`.
    """

    def __init__(self, work_dir: Path, port: int, *, appendonly: bool = False) -> None:
        self.port = port
        self.appendonly = appendonly
        argv = [
            str(redis_binary()),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            # fsync every write: a kill() in a fault test loses nothing that was acknowledged
            "--appendfsync", "always",
            "--dir", str(work_dir),
            # several Redis instances may share work_dir: keep their files apart
            "--appenddirname", f"appendonly-{port}",
            "--dbfilename", f"dump-{port}.rdb",
        ]  # fmt: skip
        super().__init__(f"redis-{port}", argv, work_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def is_ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def start_redis(work_dir: Path, *, appendonly: bool = False) -> RedisService:
    """Start redis-server on a free port; ready when PING answers."""
    service = RedisService(work_dir, free_port(), appendonly=appendonly)
    service.start()
    return service


class CerbosService(ManagedProcess):
    """Cerbos PDP serving the policies in `policies_dir` (disk storage, no watching)."""

    def __init__(self, policies_dir: Path, work_dir: Path, http_port: int, grpc_port: int) -> None:
        self.policies_dir = policies_dir.resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.config_path = work_dir / f"cerbos-{http_port}.yaml"
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "server:\n"
            f'  httpListenAddr: "127.0.0.1:{http_port}"\n'
            f'  grpcListenAddr: "127.0.0.1:{grpc_port}"\n'
            "storage:\n"
            "  driver: disk\n"
            "  disk:\n"
            f'    directory: "{self.policies_dir}"\n'
            "    watchForChanges: false\n"
            "schema:\n"
            "  enforcement: reject\n"
            "audit:\n"
            "  enabled: false\n"
            "telemetry:\n"
            "  disabled: true\n"
        )
        argv = [str(cerbos_binary()), "server", f"--config={self.config_path}"]
        super().__init__(f"cerbos-{http_port}", argv, work_dir, env={"CERBOS_NO_TELEMETRY": "1"})
        self._probe = _http_ok(f"{self.http_url}/_cerbos/health")

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def is_ready(self) -> bool:
        return self._probe()


def start_cerbos(policies_dir: Path, work_dir: Path) -> CerbosService:
    """Start Cerbos on free HTTP and gRPC ports; ready when /_cerbos/health answers 200."""
    service = CerbosService(policies_dir, work_dir, free_port(), free_port())
    service.start()
    return service


class OidcProviderService(ManagedProcess):
    """oidc-provider-mock (PyPI) on 127.0.0.1:<port>.

    Its state (users, signing key, tokens) is in memory: a restart forgets users and rotates
    the signing key.
    """

    def __init__(self, work_dir: Path, port: int) -> None:
        self.port = port
        argv = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
        super().__init__(
            f"oidc-{port}", argv, work_dir, env={"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        )
        self._probe = _http_ok(f"{self.issuer}/.well-known/openid-configuration")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        return self._probe()


def start_oidc_provider(work_dir: Path) -> OidcProviderService:
    """Start the OIDC provider on a free port; ready when its discovery document answers 200."""
    service = OidcProviderService(work_dir, free_port())
    service.start()
    return service
