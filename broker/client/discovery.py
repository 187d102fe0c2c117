"""Finding the broker: RFC 8414 metadata of an issuer, and from an MCP server's RFC 9728
protected resource metadata (named in its 401 `WWW-Authenticate`, or at the well-known URL).

Discovery decides where the user's token goes, so a discovered broker must be in
`allowed_brokers` when that list is given, and must use TLS unless it is on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from broker.client.errors import DiscoveryError
from broker.client.exchange import DEFAULT_TIMEOUT

AS_METADATA = "oauth-authorization-server"  # RFC 8414
RESOURCE_METADATA = "oauth-protected-resource"  # RFC 9728
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Unquoted values should be tokens; servers that leave a URL unquoted are tolerated.
_PARAM = re.compile(rf'({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"=][^\s,"]*))', re.DOTALL)
_CHALLENGE = re.compile(rf"({_TOKEN})(?:\s+(.*))?", re.DOTALL)


def _items(header: str) -> list[str]:
    """Split at commas outside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in header:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _param(text: str) -> tuple[str, str] | None:
    match = _PARAM.fullmatch(text.strip())
    if match is None:
        return None
    quoted = match.group(2)
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
    return match.group(1).lower(), value


def parse_www_authenticate(header: str) -> dict[str, dict[str, str]]:
    """The challenges of a `WWW-Authenticate` value (RFC 9110 §11.6.1) by lower-case scheme,
    with lower-case parameter names and unescaped values; token68 and junk are ignored."""
    challenges: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for item in _items(header):
        param = _param(item)
        if param is not None:
            if current is not None:
                current.setdefault(*param)
            continue
        challenge = _CHALLENGE.fullmatch(item)
        if challenge is None:
            current = None
            continue
        current = challenges.setdefault(challenge.group(1).lower(), {})
        first = _param(challenge.group(2) or "")
        if first is not None:
            current.setdefault(*first)
    return challenges


def resource_metadata_from(header: str | None) -> str | None:
    """The `resource_metadata` URL of a Bearer challenge (RFC 9728 §5.1), if any."""
    if not header:
        return None
    return parse_www_authenticate(header).get("bearer", {}).get("resource_metadata")


def well_known_url(identifier: str, suffix: str) -> str:
    """RFC 8414 §3.1 / RFC 9728 §3.1: `/.well-known/<suffix>` goes between host and path."""
    parts = urlsplit(identifier)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{suffix}{path}", "", ""))


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def token_endpoint_from(metadata: Any, issuer: str) -> str:
    """The token endpoint of RFC 8414 metadata, after the issuer check of §3.3 (mix-up)."""
    if not isinstance(metadata, dict) or not _same(str(metadata.get("issuer", "")), issuer):
        raise DiscoveryError("invalid_metadata",
                             f"the metadata at {issuer} does not name that issuer")
    endpoint = metadata.get("token_endpoint")
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise DiscoveryError("invalid_metadata", f"{issuer} publishes no token_endpoint")
    return endpoint


def broker_from(metadata: Any, resource: str, allowed_brokers: Sequence[str] | None) -> str:
    """The broker to use from protected resource metadata: the first authorization server
    in `allowed_brokers` (any, when None) that uses TLS or is on loopback."""
    if not isinstance(metadata, dict) or not _same(str(metadata.get("resource", "")), resource):
        raise DiscoveryError("invalid_metadata",
                             f"the protected resource metadata is not about {resource}")
    servers = metadata.get("authorization_servers")
    if not isinstance(servers, list) or not servers:
        raise DiscoveryError("invalid_metadata", "no authorization_servers")
    for server in servers:
        if not isinstance(server, str):
            continue
        allowed = allowed_brokers is None or any(_same(server, b) for b in allowed_brokers)
        parts = urlsplit(server)
        secure = parts.scheme == "https" or (parts.scheme == "http"
                                             and parts.hostname in LOOPBACK_HOSTS)
        if allowed and secure:
            return server
    raise DiscoveryError("broker_not_allowed",
                         f"{resource} names no allowed broker: {', '.join(map(str, servers))}")


def _json_of(response: httpx.Response, url: str) -> Any:
    if response.status_code != 200:
        raise DiscoveryError("invalid_metadata", f"{url}: HTTP {response.status_code}",
                             status_code=response.status_code)
    try:
        return response.json()
    except ValueError:
        raise DiscoveryError("invalid_metadata", f"{url}: not JSON") from None


async def _get_json(url: str, http: httpx.AsyncClient | None) -> Any:
    try:
        if http is None:
            async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as own:
                return _json_of(await own.get(url, headers={"Accept": "application/json"}), url)
        return _json_of(await http.get(url, headers={"Accept": "application/json"}), url)
    except httpx.HTTPError as exc:
        raise DiscoveryError("connection_error", f"{url}: {exc!r}") from None


def _get_json_sync(url: str, http: httpx.Client | None) -> Any:
    try:
        if http is None:
            with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
                return _json_of(own.get(url, headers={"Accept": "application/json"}), url)
        return _json_of(http.get(url, headers={"Accept": "application/json"}), url)
    except httpx.HTTPError as exc:
        raise DiscoveryError("connection_error", f"{url}: {exc!r}") from None


async def discover_token_endpoint(issuer: str, *, http: httpx.AsyncClient | None = None) -> str:
    """The token endpoint of the broker whose issuer URL is `issuer` (RFC 8414)."""
    return token_endpoint_from(await _get_json(well_known_url(issuer, AS_METADATA), http), issuer)


def discover_token_endpoint_sync(issuer: str, *, http: httpx.Client | None = None) -> str:
    return token_endpoint_from(_get_json_sync(well_known_url(issuer, AS_METADATA), http), issuer)


async def discover_broker(resource: str, *, challenge: str | None = None,
                          allowed_brokers: Sequence[str] | None = None,
                          http: httpx.AsyncClient | None = None) -> str:
    """The broker (issuer URL) that `resource` names in its RFC 9728 metadata: at the URL of
    the 401's `challenge` (a WWW-Authenticate value), else at the resource's well-known URL."""
    url = resource_metadata_from(challenge) or well_known_url(resource, RESOURCE_METADATA)
    return broker_from(await _get_json(url, http), resource, allowed_brokers)


def discover_broker_sync(resource: str, *, challenge: str | None = None,
                         allowed_brokers: Sequence[str] | None = None,
                         http: httpx.Client | None = None) -> str:
    url = resource_metadata_from(challenge) or well_known_url(resource, RESOURCE_METADATA)
    return broker_from(_get_json_sync(url, http), resource, allowed_brokers)
