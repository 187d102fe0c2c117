"""The `agent-broker` command line (contract §9)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from broker import cli_admin, cli_token, logs
from broker.audit import AuditQuery
from broker.config import BrokerSettings
from broker.config_loading import ConfigError, load_settings
from broker.keys import KeyFileError, KeyringFile
from broker.secrets import generate_secret, hash_secret

app = typer.Typer(help="agent-broker: attenuated, revocable tokens for AI agents.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys.", no_args_is_help=True)
agents_app = typer.Typer(help="Registered agents.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")
app.add_typer(cli_admin.sessions_app, name="sessions")
app.add_typer(cli_token.token_app, name="token")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: $BROKER_CONFIG).",
                 envvar="BROKER_CONFIG"),
]
out = Console()
err = Console(stderr=True)


def _settings(config: Path | None) -> BrokerSettings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]{len(exc.problems)} problem(s) in the configuration:[/red]")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _keyring(settings: BrokerSettings) -> KeyringFile:
    try:
        return KeyringFile(settings.signing.keys_file, settings.signing.algorithm,
                           max_token_ttl=settings.token_ttl_seconds,
                           grace=settings.signing.retired_key_grace_seconds
                           + settings.clock_leeway_seconds)
    except KeyFileError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run one broker process."""
    from broker.http.app import create_app
    from broker.http.serving import serve as serve_app

    settings = _settings(config)
    logs.configure(log_level)
    serve_app(create_app(settings), host=host, port=port, log_level=log_level)


@app.command()
def dev(
    no_mcp: Annotated[bool, typer.Option("--no-mcp",
                                         help="Do not start the demo MCP server.")] = False,
    port_offset: Annotated[int, typer.Option(
        envvar="AGENT_BROKER_DEV_PORT_OFFSET",
        help="Add N to every port (broker 8400, MCP 8401, IdP 8402, Cerbos 3592/3593, Redis "
             "6380), e.g. for a second checkout's stack; `make demo` finds them in .run/.")] = 0,
) -> None:
    """Run the local stack (Redis, Cerbos, dev IdP, broker, demo CRM); Ctrl-C stops it."""
    from broker.dev import DevPorts, run_dev

    try:
        ports = DevPorts().shifted(port_offset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--port-offset") from None
    raise typer.Exit(run_dev(Path.cwd(), with_mcp=not no_mcp, ports=ports))


@app.command()
def demo(
    broker: Annotated[str | None, typer.Option(
        help="Broker URL (default: the issuer in RUN_DIR/broker.yaml).")] = None,
    mcp: Annotated[str | None, typer.Option(
        help="MCP server URL (default: the first resource in RUN_DIR/broker.yaml).")] = None,
    idp: Annotated[str | None, typer.Option(
        help="Dev IdP URL (default: the first upstream issuer in RUN_DIR/broker.yaml).")] = None,
    run_dir: Annotated[Path, typer.Option(
        help="The dev stack's state: broker.yaml and dev-secrets.json.")] = Path(".run"),
) -> None:
    """The scripted story against the running dev stack (start it with `make run`)."""
    from broker.demo import run_demo

    raise typer.Exit(run_demo(run_dir, broker=broker, mcp=mcp, idp=idp))


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate a configuration file and print every problem with its path."""
    settings = _settings(config)
    out.print(f"[green]ok[/green]: {len(settings.agents)} agent(s), "
              f"{len(settings.resources)} resource(s), "
              f"{len(settings.upstream_issuers)} upstream issuer(s); issuer {settings.issuer}")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """Show the signing keys and which one signs now."""
    ring = _keyring(_settings(config)).ring
    now = time.time()
    signing, published = ring.signing_key(now), ring.published(now)
    table = Table("kid", "alg", "created", "activates", "state")
    for key in ring.keys:
        state = ("signing" if key is signing else "pending" if key.activates_at > now
                 else "published (retired)" if key in published else "expired")
        table.add_row(key.kid, key.alg, _ts(key.created_at), _ts(key.activates_at), state)
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(
    config: ConfigOption = None,
    activate_in: Annotated[int, typer.Option(
        help="Seconds before the new key signs; publish first so verifiers learn it.")] = 0,
) -> None:
    """Add a new signing key; older keys stay published while their tokens can live."""
    keyring = _keyring(_settings(config))
    key = keyring.rotate(time.time(), activate_in)
    out.print(f"added {key.alg} key {key.kid}, signing from {_ts(key.activates_at)}")


@agents_app.command("list")
def agents_list(config: ConfigOption = None) -> None:
    """Show the registered agents."""
    settings = _settings(config)
    table = Table("client_id", "auth", "scopes", "resources", "may delegate to")
    for a in settings.agents:
        table.add_row(a.client_id, a.auth.method, " ".join(a.scopes), "\n".join(a.resources),
                      ", ".join(a.may_delegate_to) or "-")
    out.print(table)


@agents_app.command("hash-secret")
def agents_hash_secret(
    secret: Annotated[str | None, typer.Argument(
        help="The client secret; omit to generate a random one.")] = None,
) -> None:
    """Print the `secret_hash` for a client secret (the last line is the value)."""
    if secret is None:
        secret = generate_secret()
        # Plain echo, never wrapped: these lines are copied verbatim.
        typer.echo(f"generated secret (give it to the agent, store it nowhere else): {secret}")
    typer.echo(hash_secret(secret))


@cli_admin.sessions_app.command("list")
def sessions_list(
    config: ConfigOption = None,
    user: Annotated[str | None, typer.Option(help="Only this user's sessions.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only sessions of this agent.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Show live agent sessions, with their chains, scopes and revocation status."""
    cli_admin.list_sessions(_settings(config), user, agent, limit)


@cli_admin.sessions_app.command("revoke")
def sessions_revoke(sid: str, config: ConfigOption = None, reason: cli_admin.Reason = "") -> None:
    """Revoke one session and every session delegated from it."""
    cli_admin.revoke_session(_settings(config), sid, reason)


@app.command("revoke")
def revoke(
    config: ConfigOption = None,
    user: Annotated[str | None, typer.Option(help="Every session of this user.")] = None,
    agent: Annotated[str | None, typer.Option(
        help="Every session of this agent (with --user: of that pair only).")] = None,
    session: Annotated[str | None, typer.Option(help="One session and its descendants.")] = None,
    token: Annotated[str | None, typer.Option(help="One token, by its jti.")] = None,
    reason: cli_admin.Reason = "",
) -> None:
    """Revoke now: every MCP server using mcp_plugin refuses the affected tokens."""
    cli_admin.revoke(_settings(config), user=user, agent=agent, session=session, token=token,
                     reason=reason)


@app.command("audit")
def audit(
    config: ConfigOption = None,
    user: Annotated[str | None, typer.Option()] = None,
    agent: Annotated[str | None, typer.Option()] = None,
    type: Annotated[str | None, typer.Option(help="exchange or revocation.")] = None,
    since: Annotated[int | None, typer.Option(help="Epoch seconds.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Read the audit trail, newest first."""
    try:
        query = AuditQuery(user=user, agent=agent, type=type, since=since, limit=limit)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    cli_admin.show_audit(_settings(config), query)


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
