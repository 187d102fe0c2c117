"""The broker as `agent-broker serve` runs it, plus routes that exist only in the bench:
`python -m bench.broker_app --config FILE --port N`.

One uvicorn process, one worker, served by `broker.http.serving.serve` exactly as
`agent-broker serve` is (JSON logs, no proxy headers, no server header, its garbage
collector tuning): the exchange figures are those of a deployed broker process. The
product app never carries these routes; they are added here to the app
`broker.http.app.create_app` returns.

- `POST /bench/noop`: a FastAPI endpoint that reads nothing and returns a small JSON body,
  in the same app, process and server options: the exchange measure's baseline, the price
  of one request with nothing done.
- `POST /bench/profile/start` and `/bench/profile/stop`: a pyinstrument profile of this
  process's event loop thread between the two calls. `stop` saves the session (the
  pyinstrument JSON format) to the path `start` was given; bench/profile.py renders it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from broker import logs
from broker.config_loading import load_settings
from broker.http.app import create_app
from broker.http.serving import serve

NOOP_PATH = "/bench/noop"
PROFILE_INTERVAL_S = 0.001  # pyinstrument's default; finer costs the process itself too much


def bench_app(config: Path) -> FastAPI:
    app = create_app(load_settings(config))
    profiling: dict[str, Any] = {}

    @app.post(NOOP_PATH, include_in_schema=False)
    async def noop() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.post("/bench/profile/start", include_in_schema=False)
    async def profile_start(request: Request) -> JSONResponse:
        from pyinstrument import Profiler  # a dev dependency: only when asked to profile

        # "disabled": sample the thread whatever task runs, the whole server's work, not
        # the one task that called start
        profiler = Profiler(interval=PROFILE_INTERVAL_S, async_mode="disabled")
        profiling.update(profiler=profiler, path=(await request.json())["path"])
        profiler.start()
        return JSONResponse({"started": True})

    @app.post("/bench/profile/stop", include_in_schema=False)
    async def profile_stop() -> JSONResponse:
        profiler = profiling.pop("profiler")
        session = profiler.stop()
        session.save(profiling.pop("path"))
        return JSONResponse({"samples": session.sample_count, "duration": session.duration})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    # the profile's broker runs on asyncio's own loop: pyinstrument sees uvloop's idle time
    # (inside its C loop) only when the next Python frame starts, and charges it there
    parser.add_argument("--loop", choices=("auto", "asyncio"), default="auto")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    # served as `agent-broker serve` serves, so the process is the deployed one
    serve(bench_app(args.config), host="127.0.0.1", port=args.port, log_level=args.log_level,
          loop=args.loop)


if __name__ == "__main__":
    main()
