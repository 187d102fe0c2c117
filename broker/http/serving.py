"""How one broker process serves: uvicorn's options and the interpreter tuning that go with
them, in one place for `agent-broker serve` and the bench (which measures that process).

Garbage collection: an exchange allocates a few thousand container objects (frames,
coroutines, dicts of claims, protobuf and Redis replies), so with CPython's default young
generation threshold (700 allocations) the collector runs several times per exchange, and
each run walks every young object still alive, which under load means the state of every
exchange in flight. Sampled with py-spy under 32 concurrent exchanges, `gc_collect_main`
was 7% of the worker's CPU, the largest single cost left that is not the exchange's own work.
A young threshold of 10,000 collects about fourteen times less often; objects freed by
reference counting (nearly all of them) never wait for it, so memory is unchanged in
practice, and only garbage in reference cycles lives a little longer. Measured: 1.06x and
1.09x the exchanges per CPU-second in two interleaved A/Bs (medians of 8 and 10 pairs, 7 and
9 of them above 1; docs/performance.md).
The older generations' thresholds are raised with it, which makes full collections (the
long pauses behind a p99) rarer too.
"""

from __future__ import annotations

import gc
from typing import Literal

from fastapi import FastAPI

GC_THRESHOLDS = (10_000, 20, 20)
"""gc.set_threshold's (young, middle, old): see the module docstring."""


def tune_garbage_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def serve(app: FastAPI, *, host: str, port: int, log_level: str,
          loop: Literal["auto", "asyncio"] = "auto") -> None:
    """Serve `app` in this process until interrupted: one worker, uvloop and httptools when
    installed (`loop="auto"`), logs left to `broker.logs`, no proxy headers trusted, no
    `Server` header."""
    import uvicorn  # the server only when serving: the CLI's other commands start faster

    tune_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_config=None, log_level=log_level,
                proxy_headers=False, server_header=False, loop=loop)
