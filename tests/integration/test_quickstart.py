"""The README's quick start as a newcomer runs it: a fresh `git clone`, `make run`, `make demo`,
then Ctrl-C.

The clone is of the committed HEAD (what a newcomer gets: a file that was never committed, or
one that only exists in a developer's `.run/` or `.tools/`, is missing there too). The commands
are read from the README's quick start block, so the README and this test cannot drift apart.
`make run` runs for real: the clone's Makefile, its scripts/setup.sh, then `agent-broker dev`.

Two deliberate differences from a newcomer's terminal:

- Ports. The contract wants tests off the dev stack's ports (a developer's own `make run` may
  hold them), so the stack is moved with AGENT_BROKER_DEV_PORT_OFFSET, the documented knob;
  `make demo` finds the moved stack in the clone's .run/broker.yaml, as it always does.
- The virtualenv's third-party packages. A truly fresh setup pip-installs ~150 packages
  (32,000 files, playwright and kubernetes-validate alone are 280 MB): 90 s on a quiet machine
  here, several minutes under load, and the registry's answers are not cacheable, so no warm pip
  cache helps. That branch of setup.sh (create .venv, install into it) already runs on a fresh
  clone in every CI run, where `make test` sets up first. So by default the clone's `.venv` is
  made empty here, with one `.pth` line that lets it read the suite's installed dependencies;
  setup.sh's own `pip install -c constraints.txt -e '.[dev]'` then still runs and checks every
  requirement of the clone's pyproject.toml and constraints.txt (anything missing or of another
  version is installed into the clone), and installs the
  clone itself, so every process of the stack runs the clone's code. Cerbos comes from npm into
  the clone's .tools/ as for a newcomer (npm's cache makes that two seconds).
  AGENT_BROKER_TEST_FRESH_VENV=1 skips the seeding: setup.sh creates and fills the venv itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sysconfig
import time
import venv
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest

from broker.dev import DevPorts
from broker.dev.preflight import check_port_free
from tests.integration.test_demo import STEPS
from tests.integration.test_dev_stack import _open_ports
from tests.support.services import REPO_ROOT

pytestmark = pytest.mark.integration

FRESH_VENV = os.environ.get("AGENT_BROKER_TEST_FRESH_VENV") == "1"
UP_TIMEOUT_S = 900.0 if FRESH_VENV else 240.0  # setup, then the five services (2 busy cores)
DEMO_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0  # the stack's own grace is 5 s per child, all stopped at once
BANNER_END = "Ctrl-C stops every service."
SERVICES = {  # what each of the five processes of the stack is, by its command line
    "redis": "redis-server",
    "cerbos": "cerbos server",
    "dev IdP": "-m oidc_provider_mock",
    "broker": "agent-broker serve",
    "demo MCP server": "-m agent_broker_demo.crm_server",
}
# A developer's shell or `make test` may have set these; a newcomer's terminal has none of them.
INHERITED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "PYTHONPATH",
             "PYTHONHOME", "CERBOS_BIN", "REDIS_SERVER_BIN")


def quick_start_commands() -> list[str]:
    """The commands of the README's `## Quick start` shell block, comments stripped."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Quick start\n.*?^```sh\n(.*?)^```", readme, re.M | re.S)
    assert found, "README.md has no ```sh block under '## Quick start'"
    return [line.split("#", 1)[0].strip() for line in found[1].splitlines() if line.strip()]


def _fresh_clone(into: Path) -> Path:
    clone = into / "agent-broker"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True,
                   capture_output=True, timeout=120)
    return clone


def _seed_venv(clone: Path) -> None:
    """An empty `.venv` that reads the suite's installed third-party packages (see above).

    Without pip: `python -m pip` comes from those packages too. The build backend (setuptools)
    is there as well, which is why `make run` then gets PIP_NO_BUILD_ISOLATION=0.
    """
    venv.create(clone / ".venv", with_pip=False)
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    shared = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_quickstart_shared_packages.pth").write_text("\n".join(sorted(shared)) + "\n")


def _port_offset() -> int:
    """An offset whose six ports are free, all below the kernel's ephemeral range (32768 and up)
    so that the free ports other tests take can never be among them."""
    lowest, highest = min(astuple(DevPorts())), max(astuple(DevPorts()))
    for _ in range(100):
        offset = random.randrange(10_000 - lowest, 32_000 - highest)
        if all(check_port_free(port) for port in astuple(DevPorts().shifted(offset))):
            return offset
    pytest.fail("no free set of ports for the dev stack between 10000 and 32000")


def _newcomer_env(offset: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in INHERITED and not name.startswith(("BROKER_", "AGENT_BROKER_"))}
    # Nothing from this checkout: the clone must find its own .venv and .tools.
    env["PATH"] = os.pathsep.join(entry for entry in env.get("PATH", "").split(os.pathsep)
                                  if entry and not Path(entry).resolve().is_relative_to(REPO_ROOT))
    env.update({"AGENT_BROKER_DEV_PORT_OFFSET": str(offset),
                # a terminal's line buffering, wide and plain lines for the assertions
                "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    if not FRESH_VENV:
        env["PIP_NO_BUILD_ISOLATION"] = "0"  # pip's spelling of "off"
    return env


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    started: int  # clock ticks since boot: tells a pid from a later reuse of it
    cmdline: str


def _proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    after = stat.rpartition(")")[2].split()  # fields after "(comm)": state, ppid, ...
    if after[0] == "Z":
        return None  # exited, waiting for its parent to reap it
    return Proc(pid, int(after[1]), int(after[19]), raw.replace(b"\0", b" ").decode().strip())


def _descendants(root: int) -> list[Proc]:
    procs = [p for p in map(_proc, (int(d) for d in os.listdir("/proc") if d.isdigit())) if p]
    found, frontier = [], {root}
    while frontier:
        children = [p for p in procs if p.ppid in frontier]
        found += children
        frontier = {p.pid for p in children}
    return found


def _alive(proc: Proc) -> bool:
    now = _proc(proc.pid)
    return now is not None and now.started == proc.started


class MakeRun:
    """`make run` in the background, in its own process group as in a terminal's foreground."""

    def __init__(self, argv: list[str], clone: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.seen: dict[int, Proc] = {}  # every process of the tree, so that none can escape
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def watch(self) -> list[Proc]:
        tree = _descendants(self.process.pid)
        self.seen.update({p.pid: p for p in tree})
        return tree

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while BANNER_END not in self.output():
            self.watch()
            if self.process.poll() is not None:
                pytest.fail(f"`make run` exited ({self.process.returncode}) before the stack "
                            f"was up:\n{self.tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"`make run` printed no URL table within {timeout:.0f} s:\n"
                            f"{self.tail()}", pytrace=False)
            time.sleep(0.5)

    def ctrl_c(self) -> None:
        """SIGINT to the foreground process group (make, `agent-broker dev`), as a terminal
        sends it; the services lead process groups of their own, so the stack must stop them."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`make run` still running {STOP_TIMEOUT_S:.0f} s after Ctrl-C:\n"
                        f"{self.tail()}", pytrace=False)

    def kill(self) -> None:
        """Whatever is left, by process group (each service leads its own): never a stray."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for proc in self.seen.values():
            if _alive(proc):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(proc.pid) == proc.pid:
                        os.killpg(proc.pid, signal.SIGKILL)  # with whatever it started
                    else:
                        os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.mark.timeout(UP_TIMEOUT_S + DEMO_TIMEOUT_S + STOP_TIMEOUT_S + 180)
def test_the_quick_start_works_on_a_fresh_clone(tmp_path: Path) -> None:
    commands = quick_start_commands()
    assert commands[:2] == ["make run", "make demo"], commands
    clone = _fresh_clone(tmp_path)
    assert not (clone / ".venv").exists() and not (clone / ".tools").exists()
    assert not (clone / ".run").exists()
    if not FRESH_VENV:
        _seed_venv(clone)
    offset = _port_offset()
    ports = DevPorts().shifted(offset)
    env = _newcomer_env(offset)

    run = MakeRun(shlex.split(commands[0]), clone, env, tmp_path / "make-run.log")
    try:
        run.wait_ready(UP_TIMEOUT_S)
        # All five services are up, each a child of `agent-broker dev`, run from the clone.
        dev = [p for p in run.watch() if "agent-broker dev" in p.cmdline]
        assert len(dev) == 1, run.tail()
        services = [p for p in run.watch() if p.ppid == dev[0].pid]
        running = {name: [p for p in services if mark in p.cmdline]
                   for name, mark in SERVICES.items()}
        assert all(len(found) == 1 for found in running.values()), (running, run.tail())
        assert len(services) == len(SERVICES), [p.cmdline for p in services]
        assert dev[0].cmdline.startswith(f"{clone}/.venv/bin/python"), dev[0].cmdline
        out = run.output()
        assert f"http://127.0.0.1:{ports.broker}" in out and f":{ports.mcp}/mcp" in out, out
        assert "generated .run/broker.yaml" in out

        demo = subprocess.run(shlex.split(commands[1]), cwd=clone, env=env, capture_output=True,
                              text=True, timeout=DEMO_TIMEOUT_S, check=False)
        story = demo.stdout
        assert demo.returncode == 0, f"{story}{demo.stderr}\n--- make run:\n{run.tail()}"
        assert [step for step in STEPS if step not in story] == [], story
        assert f"broker      http://127.0.0.1:{ports.broker}" in story  # found in .run/
        assert "send_email(to='eve@evil.test') is refused" in story  # the denied call
        assert "the agent's next call is refused: HTTP 401 invalid_token" in story
        delay = re.search(r"refused after (\d+\.\d) ms \(target \d+ ms\)", story)
        assert delay, story  # the revocation, with its measured delay
        assert "✗" not in story

        run.watch()
        run.ctrl_c()
        stopped = run.output()
        assert "all services stopped" in stopped, run.tail()
        assert "Traceback" not in stopped, run.tail()
        left = [p.cmdline for p in run.seen.values() if _alive(p)]
        assert left == [], f"still running after Ctrl-C: {left}"
        assert _open_ports(ports) == []
        shutil.rmtree(clone, ignore_errors=True)  # its .tools and .venv are big; kept on failure
    finally:
        run.kill()

