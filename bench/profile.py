"""A profile of the exchange hot path (issue 6 §6), saved beside the results.

A broker like the exchange measure's (bench/broker_app.py) serves exchanges at concurrency 32
from `python -m bench.load`; pyinstrument samples its event loop thread for the timed
window (started and stopped through `/bench/profile/*`, so start-up and warm-up stay out).
It runs on asyncio's own event loop rather than uvloop (httptools still parses HTTP): inside
uvloop's C loop pyinstrument cannot tell waiting from working, and charges the idle time to
whichever Python frame runs next, which would inflate every share that follows an await.
Written to bench/profiles/ (git-ignored):

    exchange.pyisession   the raw session (`pyinstrument --load exchange.pyisession`)
    exchange.html         the interactive call tree
    exchange.txt          the call tree as text, then the 40 functions with most self time

The figures are the top costs: the share of the loop's busy time (idle `select` left out)
under each part of the path, matched by function and file in the call tree, outermost match
first, so no sample counts twice. grpc.aio runs each call's completion as a task of its own,
outside the endpoint's frames; it is counted with the Cerbos decision. Profiling slows the
process (samples every millisecond), so read shares, not absolute times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from pyinstrument.frame import Frame
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

from bench.exchange import PREFIX, exchange_requests
from bench.load import LoadSpec, run_in_process
from bench.measure import Measure
from bench.results import Figure
from bench.sessions import forget_prefix
from bench.stack import BrokerProcess, Stack, running
from bench.tokens import user_id_token

PROFILES = Path(__file__).resolve().parent / "profiles"

Matchers = tuple[tuple[str, str], ...]
"""(function, file path suffix) pairs; a frame matching any of them is counted whole."""

# the parts of the path, in the order a request meets them
PARTS: dict[str, Matchers] = {
    "form parsing": (("read_form", "broker/http/forms.py"),),
    # the failed-authentication limiter's look-up (one MGET) before the authenticator; a
    # secret verified before, whose buckets were just found clear, skips it
    "failed-auth limiter check": (("_retry_after", "broker/http/rate_limit.py"),),
    "client authentication": (("authenticate", "broker/http/client_auth.py"),
                              ("authenticate_proven", "broker/http/client_auth.py")),
    "subject token validation": (("validate_subject_token", "broker/upstream.py"),),
    "Cerbos decision": (("delegable_scopes", "broker/pdp/cerbos.py"),
                        ("_invoke", "grpc/aio/_call.py")),
    "Redis session write": (("open_session", "broker/stores/redis_sessions.py"),),
    "token signing": (("mint", "broker/tokens.py"),),
    "exchange log line": (("info", "logging/__init__.py"),),
}
ENDPOINT: Matchers = (("token", "broker/http/oauth_routes.py"),)
IDLE: Matchers = (("select", "selectors.py"), ("poll", "<built-in>"))
FIGURES = (*PARTS, "rest of the endpoint", "HTTP server and framework")


@dataclass(frozen=True)
class Params:
    users: int = 16
    window_s: float = 6.0
    warmup_s: float = 1.0
    concurrency: int = 32


FULL = Params()
SMOKE = Params(users=2, window_s=0.5, warmup_s=0.2)


def _is(frame: Frame, matchers: Matchers) -> bool:
    path = frame.file_path or ""
    return any(frame.function == f and path.endswith(suffix) for f, suffix in matchers)


def _outermost(frames: Iterable[Frame], matchers: Matchers) -> list[Frame]:
    """The frames matching, at or below `frames`, without descending into a match."""
    found = []
    for frame in frames:
        found += [frame] if _is(frame, matchers) else _outermost(frame.children, matchers)
    return found


def _time_under(frames: Iterable[Frame], matchers: Matchers) -> float:
    return sum(f.time for f in _outermost(frames, matchers))


def top_costs(session: Session) -> dict[str, float]:
    """Share (%) of the busy time under each part of the path, the endpoint's remainder
    and everything outside the endpoint (uvicorn, httptools, Starlette, FastAPI, the loop)."""
    root = session.root_frame()
    if root is None:
        raise RuntimeError("the profile recorded nothing")
    busy = root.time - _time_under([root], IDLE)
    endpoints = _outermost([root], ENDPOINT)
    endpoint = sum(f.time for f in endpoints)
    inside = sum(_time_under(endpoints, matchers) for matchers in PARTS.values())
    shares = {name: _time_under([root], matchers) for name, matchers in PARTS.items()}
    outside = sum(shares.values()) - inside  # the parts' own tasks (grpc.aio's)
    shares["rest of the endpoint"] = endpoint - inside
    shares["HTTP server and framework"] = busy - endpoint - outside
    return {name: round(100 * t / busy, 1) for name, t in shares.items()}


def self_times(root: Frame, top: int = 40) -> list[tuple[float, str]]:
    """(seconds, function and file) with the most time spent in the function itself."""
    totals: dict[str, float] = {}

    def walk(frame: Frame) -> None:
        if frame.function != "[self]":  # pyinstrument's synthetic own-time children
            real = [c for c in frame.children if c.function != "[self]"]
            where = f"{frame.function}  {frame.file_path_short}"
            totals[where] = totals.get(where, 0.0) + frame.time - sum(c.time for c in real)
        for child in frame.children:
            walk(child)

    walk(root)
    return sorted(((t, where) for where, t in totals.items()), reverse=True)[:top]


def write_reports(session: Session, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.html").write_text(HTMLRenderer().render(session))
    tree = ConsoleRenderer(unicode=False, color=False, show_all=False).render(session)
    root = session.root_frame()
    flat = "\n".join(f"{t:8.3f} s  {100 * t / session.duration:5.1f}%  {where}"
                     for t, where in (self_times(root) if root is not None else []))
    (directory / f"{name}.txt").write_text(
        f"{tree}\n\nFunctions by self time (the idle select included):\n{flat}\n")


def _profile(broker: BrokerProcess, params: Params, id_tokens: list[str], path: Path
             ) -> tuple[int, dict[str, Any]]:
    requests = exchange_requests(broker, id_tokens)
    warm = LoadSpec("127.0.0.1", broker.port, requests, params.concurrency,
                    params.warmup_s, 0.0)
    run_in_process(warm)  # imports, JWKS, connections: before the profile starts
    with httpx.Client(base_url=broker.url, trust_env=False, timeout=30) as http:
        http.post("/bench/profile/start", json={"path": str(path)}).raise_for_status()
        result = run_in_process(LoadSpec("127.0.0.1", broker.port, requests,
                                         params.concurrency, params.window_s, 0.0))
        stopped: dict[str, Any] = http.post("/bench/profile/stop").json()
    if result.unexpected:
        raise RuntimeError(f"profiled exchanges failed: {result.first_error}")
    return result.requests, stopped


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    id_tokens = [user_id_token(stack.oidc.issuer) for _ in range(params.users)]
    directory = stack.work_dir / "profiles" if smoke else PROFILES
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "exchange.pyisession"
    broker = stack.bench_broker(PREFIX)
    broker.argv += ["--loop", "asyncio"]  # see the module docstring
    try:
        with running([broker]):
            exchanges, stopped = _profile(broker, params, id_tokens, path)
    finally:
        forget_prefix(stack.redis_url, PREFIX)
    session = Session.load(str(path))
    write_reports(session, directory, "exchange")
    shares = top_costs(session)
    figures = [Figure("profiled exchanges", exchanges, "exchanges",
                      note=f"{stopped['samples']} samples over {stopped['duration']:.1f} s")]
    figures += [Figure(name, shares[name], "%", note="of the event loop's busy time")
                for name in FIGURES]
    return {**asdict(params), "files": json.dumps(sorted(p.name for p in directory.iterdir()
                                                          if p.name.startswith("exchange")))
            }, figures


MEASURE = Measure(
    name="profile",
    title="Exchange hot path profile",
    figures=("profiled exchanges", *FIGURES),
    run=run,
)
