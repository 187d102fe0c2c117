"""`agent-broker dev` as a newcomer runs it: the real stack, on free ports, in a temp run dir.

The stack runs as `python -m broker.dev` (the same `run_dev` as `make run`, with its ports and
run dir as options) so it never collides with a developer's own `make run` on the contract ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, fields
from pathlib import Path

import httpx
import jwt
import pytest
import redis

from broker.dev import DevLayout, DevPorts
from broker.dev.config import RESEARCH_AGENT, ensure_dev_config
from tests.support.oidc import oidc_login
from tests.support.services import REPO_ROOT, ServiceError, cerbos_binary, free_port, redis_binary

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BANNER_END = "Ctrl-C stops every service."


def _free_ports() -> DevPorts:
    chosen: list[int] = []
    while len(chosen) < len(fields(DevPorts)):
        if (port := free_port()) not in chosen:
            chosen.append(port)
    return DevPorts(*chosen)


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class DevStack:
    """One `python -m broker.dev` child with its output in a log file."""

    def __init__(self, run_dir: Path, ports: DevPorts, *extra: str) -> None:
        self.run_dir, self.ports, self.log = run_dir, ports, run_dir.parent / "dev-stack.log"
        self.layout = DevLayout.create(REPO_ROOT, run_dir=run_dir, ports=ports)
        port_args = [arg for f in fields(DevPorts) for arg in
                     (f"--{f.name.replace('_', '-')}-port", str(getattr(ports, f.name)))]
        try:  # the binaries the rest of the suite uses; missing ones fail, never skip
            env = {**os.environ, "CERBOS_BIN": str(cerbos_binary()),
                   "REDIS_SERVER_BIN": str(redis_binary()), "PYTHONUNBUFFERED": "1"}
        except ServiceError as exc:
            pytest.fail(str(exc), pytrace=False)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broker.dev", "--run-dir", str(run_dir), *port_args,
                 *extra], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the dev stack exited ({self.process.returncode}) before {what}:\n"
                            f"{_tail(self.log)}", pytrace=False)
            if check():
                return
            time.sleep(0.1)
        pytest.fail(f"no {what} within {READY_TIMEOUT_S:.0f} s:\n{_tail(self.log)}",
                    pytrace=False)

    def wait_ready(self) -> None:
        def broker_ready() -> bool:
            try:
                return httpx.get(f"{self.layout.broker_url}/readyz", timeout=1.0,
                                 trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for("broker /readyz 200", broker_ready)
        self.wait_for("URL table and try-it block", lambda: BANNER_END in self.output())

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the dev stack did not exit within {timeout:.0f} s:\n{_tail(self.log)}",
                        pytrace=False)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., DevStack]]:
    stacks: list[DevStack] = []

    def start(*extra: str) -> DevStack:
        stack = DevStack(tmp_path / f"run{len(stacks)}", _free_ports(), *extra)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _open_ports(ports: DevPorts) -> list[int]:
    return [port for port in astuple(ports) if _listening(port)]


def _exchange(broker_url: str, secret: str, id_token: str, resource: str) -> httpx.Response:
    return httpx.post(f"{broker_url}/oauth2/token", auth=(RESEARCH_AGENT, secret), data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": id_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "resource": resource, "scope": "crm:read crm:write",
    }, timeout=10.0, trust_env=False)


def test_the_stack_comes_up_exchanges_alice_token_and_stops_on_ctrl_c(
    start_stack: Callable[..., DevStack],
) -> None:
    stack = start_stack()
    stack.wait_ready()
    layout = stack.layout

    secrets = json.loads(layout.secrets_file.read_text())
    assert layout.secrets_file.stat().st_mode & 0o777 == 0o600
    assert layout.keys_file.stat().st_mode & 0o777 == 0o600
    assert (layout.redis_dir / "appendonlydir").is_dir()  # Redis runs with AOF
    assert "secret_hash" in layout.config_file.read_text()
    assert secrets[RESEARCH_AGENT] not in layout.config_file.read_text()

    # alice was configured by the stack: no claims passed here
    id_token = oidc_login(layout.idp_url, "alice").id_token
    response = _exchange(layout.broker_url, secrets[RESEARCH_AGENT], id_token, layout.mcp_url)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "crm:read crm:write"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["act"], claims["roles"]) == (
        "alice", {"sub": RESEARCH_AGENT}, ["sales_rep"])

    # The printed "try it" block works as pasted into a shell at the repository root.
    lines = stack.output().splitlines()
    block = "\n".join(lines[lines.index(next(x for x in lines if x.startswith("# 1."))):
                            lines.index(BANNER_END)])
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["scope"] == "crm:read crm:write"

    if "crm is ready" in stack.output():  # the demo MCP server, once it exists
        metadata = httpx.get(f"{layout.mcp_base_url}/.well-known/oauth-protected-resource/mcp",
                             timeout=5.0, trust_env=False)
        assert metadata.status_code == 200
    else:
        assert "demo MCP server" in stack.output()

    stack.process.send_signal(signal.SIGINT)
    assert stack.wait_exit() == 0, _tail(stack.log)
    assert _open_ports(stack.ports) == []
    assert "all services stopped" in stack.output()


def test_a_service_that_dies_stops_the_whole_stack(start_stack: Callable[..., DevStack]) -> None:
    stack = start_stack("--no-mcp")
    stack.wait_ready()
    client = redis.Redis(port=stack.ports.redis, socket_timeout=2.0)
    redis_pid = int(client.info("server")["process_id"])
    client.close()

    os.kill(redis_pid, signal.SIGKILL)

    assert stack.wait_exit() != 0
    assert "redis stopped unexpectedly (killed by SIGKILL)" in stack.output()
    assert _open_ports(stack.ports) == []


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    ports = _free_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.redis))
        squatter.listen()
        stack = DevStack(tmp_path / "run", ports)
        code = stack.wait_exit()
    assert code == 2
    assert f"port {ports.redis} (redis) is in use" in stack.output()
    assert "is another `make run` running?" in stack.output()
    assert not (tmp_path / "run" / "broker.yaml").exists()
    assert _open_ports(ports) == []


def test_the_config_is_generated_once_then_kept(tmp_path: Path) -> None:
    layout = DevLayout.create(REPO_ROOT, run_dir=tmp_path / "run", ports=_free_ports())
    first = ensure_dev_config(layout)
    text = layout.config_file.read_text()
    second = ensure_dev_config(layout)

    assert (first.generated, second.generated) == (True, False)
    assert layout.config_file.read_text() == text
    assert second.secrets == first.secrets
    assert second.notes == []
    assert first.settings.issuer == layout.broker_url
    assert first.settings.resource(layout.mcp_url) is not None
