"""Process supervision for the dev stack: start, stream, wait until ready, watch, stop.

Each service is a child process in its own session (a Ctrl-C in the terminal reaches only us,
and we decide how the children stop), with stdout and stderr merged and streamed line by line
to the terminal behind a coloured, fixed-width name. Readiness waits are bounded and fail with
the tail of the service's output. Once running, the first child to die unasked stops the
whole stack with a non-zero status; SIGINT, SIGTERM and SIGHUP stop it cleanly (SIGTERM to
each child's process group, SIGKILL after a grace period or at a second Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

NAME_WIDTH = 6
TAIL_LINES = 30
STOP_GRACE_S = 5.0
POLL_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0
_LINE_LIMIT = 1 << 20  # longest output line read whole; longer ones are cut, never fatal

Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: Sequence[str]
    probe: Probe
    """One readiness check; True when the service serves. Must not raise."""
    cwd: Path
    color: str = "white"
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0


class StartupError(Exception):
    """A service could not be started or made ready; `tail` is its last output."""

    def __init__(self, message: str, tail: Sequence[str] = ()) -> None:
        self.message = message
        self.tail = list(tail)
        super().__init__(message)


class Child:
    """One running service: its process, its last lines of output and its output pump."""

    def __init__(self, spec: ServiceSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pump: asyncio.Task[None] | None = None
        self.watch: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def describe_exit(code: int) -> str:
    """'exit code 3' or 'killed by SIGKILL'."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Runs services as child processes and owns their lifecycle."""

    def __init__(self, console: Console, *, stop_grace: float = STOP_GRACE_S) -> None:
        self.console = console
        self.stop_grace = stop_grace
        self.children: list[Child] = []
        self._wake = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = False
        self._signal: signal.Signals | None = None
        self._crashed: tuple[Child, int] | None = None
        self._output_lost = False

    # --- output ------------------------------------------------------------------------------
    def emit(self, name: str, color: str, line: Text | str) -> None:
        if self._output_lost:
            return
        body = Text.from_ansi(line) if isinstance(line, str) else line
        try:
            self.console.print(Text(f"{name:<{NAME_WIDTH}} | ", style=color), body, sep="",
                               soft_wrap=True)
        except (OSError, SystemExit):  # rich turns a broken pipe into SystemExit
            # Nobody reads us any more (`| head`, a closed terminal): keep supervising, so
            # that the children are still stopped properly, but quietly.
            self._output_lost = True

    def say(self, message: str, style: str = "") -> None:
        """A line from the stack itself."""
        self.emit("dev", "bold", Text(message, style=style))

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, spec: ServiceSpec) -> Child:
        self.say(f"starting {spec.name}: {shlex.join(spec.argv)}", style="dim")
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd=spec.cwd, env={**os.environ, **spec.env},
                start_new_session=True, limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise StartupError(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from None
        child = Child(spec, process)
        self.children.append(child)
        child.pump = asyncio.create_task(self._pump(child))
        child.watch = asyncio.create_task(self._watch(child))
        return child

    async def wait_ready(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + child.spec.ready_timeout
        while True:
            if child.process.returncode is not None:
                await self._drain(child)
                raise StartupError(f"{child.name} stopped before it was ready "
                                   f"({describe_exit(child.process.returncode)})", child.tail)
            if await self._probe(child.spec.probe):
                break
            if loop.time() > deadline:
                raise StartupError(f"{child.name} was not ready within "
                                   f"{child.spec.ready_timeout:.0f} s", child.tail)
            await asyncio.sleep(POLL_INTERVAL_S)
        self.say(f"{child.name} is ready ({loop.time() - started:.1f} s)", style="green")

    async def start_ready(self, *specs: ServiceSpec) -> list[Child]:
        """Start services side by side; return once every one of them is ready."""
        children = [await self.start(spec) for spec in specs]
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other waits
                for child in children:
                    group.create_task(self.wait_ready(child))
        except* StartupError as errors:
            raise errors.exceptions[0] from None
        return children

    async def run(self, main: Callable[[Supervisor], Coroutine[Any, Any, None]]) -> int:
        """Run `main` (which starts the services), then keep the stack up until told to stop.

        Returns 0 after a requested stop, 1 when a service failed to start or died.
        """
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        startup = asyncio.create_task(main(self))
        woken = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({startup, woken}, return_when=asyncio.FIRST_COMPLETED)
            if startup.done() and not self._wake.is_set():
                if (error := startup.exception()) is not None:
                    return self._report_startup(error)
                await woken  # up and running: until a signal or a crash
            return self._report_wake(starting=not startup.done())
        finally:
            for task in (startup, woken):
                task.cancel()
                with contextlib.suppress(BaseException):  # whatever it was, stop the children
                    await task
            await self.stop_all()
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def stop_all(self) -> None:
        """Stop every child at once (SIGTERM, SIGKILL after the grace); wait for all of them."""
        self._stopping = True
        running = [c for c in reversed(self.children) if c.process.returncode is None]
        if running:
            self.say("stopping " + ", ".join(c.name for c in running))
        await asyncio.gather(*(self._stop(child) for child in reversed(self.children)))
        if running:
            self.say("all services stopped")

    # --- internals ---------------------------------------------------------------------------
    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping or self._wake.is_set():
            self._force.set()  # a second Ctrl-C: no more grace
            return
        self._signal = sig
        self._wake.set()

    def _report_startup(self, error: BaseException) -> int:
        if not isinstance(error, StartupError):
            raise error
        self.say(error.message, style="bold red")
        self._report_tail(error.tail)
        return 1

    def _report_wake(self, *, starting: bool) -> int:
        if self._signal is not None:
            self.say(f"received {self._signal.name}: stopping the stack")
            return 0
        if self._crashed is not None:
            child, code = self._crashed
            self.say(f"{child.name} stopped unexpectedly ({describe_exit(code)}); "
                     "stopping the others", style="bold red")
            if starting:  # its output is the story of why the stack did not come up
                self._report_tail(list(child.tail))
        return 1

    def _report_tail(self, tail: list[str]) -> None:
        if not tail:
            self.say("it printed nothing", style="red")
            return
        self.say(f"its last {len(tail)} line(s) of output:", style="red")
        for line in tail:
            self.say(f"  {line}", style="red")

    async def _probe(self, probe: Probe) -> bool:
        try:
            return await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
        except (TimeoutError, OSError):
            return False

    async def _pump(self, child: Child) -> None:
        stream = child.process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: show what is left of it
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            child.tail.append(line)
            self.emit(child.name, child.spec.color, line)

    async def _drain(self, child: Child) -> None:
        if child.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(child.pump), 1.0)

    async def _watch(self, child: Child) -> None:
        code = await child.process.wait()
        await self._drain(child)
        if not self._stopping and self._crashed is None:
            self._crashed = (child, code)
            self._wake.set()

    async def _stop(self, child: Child) -> None:
        process = child.process
        if process.returncode is None:
            self._kill_group(process.pid, signal.SIGTERM)
            exited = asyncio.create_task(process.wait())
            forced = asyncio.create_task(self._force.wait())
            await asyncio.wait({exited, forced}, timeout=self.stop_grace,
                               return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if process.returncode is None:
                self.say(f"{child.name} did not stop: killing it", style="yellow")
                self._kill_group(process.pid, signal.SIGKILL)
            await exited
        await self._drain(child)

    @staticmethod
    def _kill_group(pid: int, sig: signal.Signals) -> None:
        # Only called while the child is not reaped yet, so its pid (= its process group,
        # being a session leader) cannot belong to anyone else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
