"""Checks before the dev stack starts anything: programs, files, one stack per run dir, free ports.

A taken port is never worked around with another one: the message names the port, the service
that wants it, and (on Linux, when /proc lets us see it) the process that holds it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
from pathlib import Path

from broker.dev.layout import LOOPBACK, DevLayout

SETUP_HINT = "run `make setup` (scripts/setup.sh), which installs what is missing"


def find_redis() -> Path | None:
    """$REDIS_SERVER_BIN, else `redis-server` on PATH."""
    found = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    return Path(found) if found and os.access(found, os.X_OK) else None


def find_cerbos(repo_root: Path) -> Path | None:
    """$CERBOS_BIN, else the project's .tools/bin/cerbos, else `cerbos` on PATH."""
    candidates = [os.environ.get("CERBOS_BIN"), str(repo_root / ".tools" / "bin" / "cerbos"),
                  shutil.which("cerbos")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def check_files(layout: DevLayout) -> list[str]:
    problems = []
    if find_redis() is None:
        problems.append(f"redis-server not found on PATH: {SETUP_HINT}")
    if find_cerbos(layout.repo_root) is None:
        problems.append(f"the Cerbos binary is not at .tools/bin/cerbos nor on PATH: {SETUP_HINT}")
    for needed in (layout.cerbos_config, layout.policies_dir, layout.config_template):
        if not needed.exists():
            problems.append(f"{needed} is missing: run `agent-broker dev` from the repository root")
    return problems


def running_stack_pid(layout: DevLayout) -> int | None:
    """The pid of another live `agent-broker dev` using the same run dir, if any."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline is None or _is_dev_stack(cmdline) else None  # else: a reused pid


def check_ports(layout: DevLayout) -> list[str]:
    """Plain sentences naming each port of the stack that something already listens on."""
    same_dir = running_stack_pid(layout)
    stacks: dict[int, list[int]] = {}  # another dev stack's pid -> the ports it holds
    problems = []
    for port, service in layout.ports.owners().items():
        if check_port_free(port):
            continue
        holder = _listener_pid(port)
        stack = same_dir if same_dir is not None else _dev_stack_parent(holder)
        if stack is not None:
            stacks.setdefault(stack, []).append(port)
            continue
        who = f" by pid {holder} ({_short(_cmdline(holder) or '?')})" if holder else ""
        problems.append(f"port {port} ({service}) is in use{who}: is another `make run` "
                        "running? Stop it or free the port (or move this stack: "
                        "AGENT_BROKER_DEV_PORT_OFFSET=100 make run)")
    for stack, ports in stacks.items():
        problems.insert(0, f"another `agent-broker dev` (pid {stack}) is running and holds "
                           f"port(s) {', '.join(map(str, ports))}: is another `make run` "
                           f"running? Stop it first (Ctrl-C in its terminal, or kill {stack})")
    if same_dir is not None and not stacks:
        problems.append(f"another `agent-broker dev` (pid {same_dir}) is running with "
                        f"{layout.shown(layout.run_dir)}; two stacks cannot share it")
    return problems


def check_port_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` now.

    SO_REUSEADDR as servers set it: a connection in TIME_WAIT does not count, a listener does
    (also one on 0.0.0.0).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def write_pid_file(layout: DevLayout) -> None:
    layout.pid_file.write_text(f"{os.getpid()}\n")


def remove_pid_file(layout: DevLayout) -> None:
    with contextlib.suppress(OSError):
        if layout.pid_file.read_text().strip() == str(os.getpid()):
            layout.pid_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _is_dev_stack(cmdline: str) -> bool:
    return any(mark in cmdline for mark in ("agent-broker dev", "broker.dev", "run_dev"))


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _dev_stack_parent(pid: int | None) -> int | None:
    """The pid of the `agent-broker dev` whose child `pid` is, if it is one."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rpartition(")")[2].split()[1])  # fields after "(comm)": state, ppid
    except (OSError, ValueError, IndexError):
        return None
    cmdline = _cmdline(parent)
    return parent if cmdline is not None and _is_dev_stack(cmdline) else None


def _listener_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1/any:`port`, if /proc shows it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                # cols[1] local "ADDR:PORT" in hex, cols[3] state (0A = LISTEN), cols[9] inode
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    targets = {f"socket:[{inode}]" for inode in inodes if inode != "0"}
    if not targets:
        return None
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _holds(entry.path, targets):
                return int(entry.name)
    return None


def _holds(proc_dir: str, targets: set[str]) -> bool:
    try:
        fds = os.scandir(f"{proc_dir}/fd")
    except OSError:
        return False  # another user's process: not ours to see
    with fds:
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd.path) in targets:
                    return True
    return False
