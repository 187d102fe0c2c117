"""`agent-broker token exchange | inspect`: the agent side, for shells and for humans.

`exchange` prints the agent token alone on stdout, so `TOKEN=$(agent-broker token exchange ...)`
works; everything else (warnings, errors) goes to stderr. Secrets are best passed through the
environment or a file: a command line is visible to every user of the machine (`ps`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.client import (
    AuthMethod,
    ClientCredentials,
    DPoPKey,
    TokenExchangeError,
    decode_unverified,
    discover_token_endpoint_sync,
    exchange_token_sync,
    token_type_urn,
)

SECRET_ENV = "AGENT_BROKER_CLIENT_SECRET"
SUBJECT_ENV = "AGENT_BROKER_SUBJECT_TOKEN"

token_app = typer.Typer(help="Get and read agent tokens (the agent side).", no_args_is_help=True)


class AuthMethodChoice(StrEnum):
    basic = "basic"
    post = "post"


class TokenTypeChoice(StrEnum):
    id_token = "id_token"
    access_token = "access_token"
    jwt = "jwt"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _read(path: Path, what: str) -> str:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise _fail(f"cannot read the {what} from {path}: {exc.strerror}") from None
    return text.strip()


def _on_argv(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)  # typer vendors click: compare by name
    return source is not None and source.name == "COMMANDLINE"


def _one_of(value: str | None, path: Path | None, what: str, flag: str) -> str:
    if value is not None and path is not None:
        raise _fail(f"give the {what} once: {flag} or {flag}-file")
    if path is not None:
        value = _read(path, what)
    elif value == "-":
        value = sys.stdin.read().strip()
    if not value:
        raise _fail(f"no {what}: use {flag}-file, {flag} or the environment")
    return value


@token_app.command("exchange")
def exchange(
    ctx: typer.Context,
    broker: Annotated[str, typer.Option(help="The broker's issuer URL.")],
    client_id: Annotated[str, typer.Option(help="The agent's client_id.")],
    resource: Annotated[str, typer.Option(help="The MCP server's resource URI (the audience).")],
    client_secret: Annotated[str | None, typer.Option(
        envvar=SECRET_ENV, show_envvar=True,
        help="Prefer the environment or --client-secret-file: argv is visible to others.",
    )] = None,
    client_secret_file: Annotated[Path | None, typer.Option(
        help="A file holding the client secret ('-': stdin).")] = None,
    scope: Annotated[str | None, typer.Option(
        help='Space-separated, e.g. "crm:read crm:write"; default: all the agent may get.',
    )] = None,
    subject_token: Annotated[str | None, typer.Option(
        envvar=SUBJECT_ENV, show_envvar=True, help="The user's token ('-': stdin).")] = None,
    subject_token_file: Annotated[Path | None, typer.Option(
        help="A file holding the subject token ('-': stdin).")] = None,
    subject_token_type: Annotated[TokenTypeChoice, typer.Option(
        help="id_token (a user's), access_token (an agent token, to re-delegate) or jwt.",
    )] = TokenTypeChoice.id_token,
    auth_method: Annotated[AuthMethodChoice, typer.Option(
        help="basic: client_secret_basic; post: client_secret_post.")] = AuthMethodChoice.basic,
    dpop_key: Annotated[Path | None, typer.Option(
        help="Bind the token to this DPoP key (RFC 9449): a PEM file, Ed25519 or P-256; "
             "created (mode 0600, Ed25519) if absent. Resource requests then need proofs "
             "by it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response.")] = False,
) -> None:
    """Exchange a user's token for an agent token; print the token alone (or --json)."""
    for name, flag in (("client_secret", "--client-secret"), ("subject_token", "--subject-token")):
        if _on_argv(ctx, name) and ctx.params.get(name) != "-":
            typer.echo(f"warning: {flag} on the command line is visible to other users of this "
                       f"machine; prefer {flag}-file or the environment", err=True)
    secret = _one_of(client_secret, client_secret_file, "client secret", "--client-secret")
    subject = _one_of(subject_token, subject_token_file, "subject token", "--subject-token")
    method: AuthMethod = ("client_secret_post" if auth_method is AuthMethodChoice.post
                          else "client_secret_basic")
    key = _dpop_key(dpop_key) if dpop_key is not None else None
    try:
        endpoint = discover_token_endpoint_sync(broker)
        result = exchange_token_sync(
            endpoint, subject_token=subject, resource=resource, scope=scope,
            subject_token_type=token_type_urn(subject_token_type.value),
            client=ClientCredentials(client_id, secret, method), dpop=key,
        )
    except TokenExchangeError as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.access_token)


def _dpop_key(path: Path) -> DPoPKey:
    """The key in `path`, or a new Ed25519 key written there readable by its owner only."""
    try:
        if path.exists():
            return DPoPKey.from_pem(path.read_bytes())
        key = DPoPKey.generate()
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(key.to_pem())
        typer.echo(f"created DPoP key {path} (thumbprint {key.thumbprint})", err=True)
        return key
    except OSError as exc:
        raise _fail(f"cannot use the DPoP key file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _fail(f"{path}: {exc}") from None


@token_app.command("proof")
def proof(
    dpop_key: Annotated[Path, typer.Option(help="The PEM key the token is bound to.")],
    url: Annotated[str, typer.Option(help="The URL of the request the proof is for.")],
    method: Annotated[str, typer.Option(help="Its HTTP method.")] = "POST",
    token: Annotated[str | None, typer.Option(
        help="The access token sent with it ('-': stdin), for the proof's ath.")] = None,
) -> None:
    """Print a fresh DPoP proof (RFC 9449) for one request, e.g. for curl:
    -H "Authorization: DPoP $TOKEN" -H "DPoP: $(agent-broker token proof ...)"."""
    if not dpop_key.exists():
        raise _fail(f"no DPoP key at {dpop_key}")
    if token == "-":
        token = sys.stdin.read().strip()
    typer.echo(_dpop_key(dpop_key).proof(method, url, access_token=token or None))


@token_app.command("inspect")
def inspect(
    token: Annotated[str, typer.Argument(help="A JWT, or '-' to read it from stdin.")],
) -> None:
    """Print a JWT's header and claims WITHOUT verifying its signature (for reading only)."""
    if token == "-":
        token = sys.stdin.read()
    try:
        header, claims = decode_unverified(token)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo("note: NOT VERIFIED - the signature was not checked; anyone can write these "
               "claims", err=True)
    shown: dict[str, Any] = {"verified": False, "header": header, "claims": claims}
    if isinstance(claims.get("exp"), int):
        shown["expires_in"] = claims["exp"] - int(time.time())  # negative: already expired
    typer.echo(json.dumps(shown, indent=2))
