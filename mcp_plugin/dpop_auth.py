"""Authentication of MCP requests, Bearer and DPoP (RFC 6750, RFC 9449 §7).

FastMCP authenticates with Starlette's AuthenticationMiddleware and the MCP SDK's
BearerAuthBackend, which only reads `Authorization: Bearer`. `BrokerAuthentication` takes
that middleware's place (installed by `BrokerAuthProvider.get_middleware`) and also reads
`Authorization: DPoP <token>` with its `DPoP` proof header:

- a token bound to a key (`cnf.jkt`) is accepted only with the DPoP scheme and a valid proof by
  that key for this very request: `htm`, `htu` (this server's configured resource URI, never the
  URL a proxy handed to uvicorn), `iat` within the window, `ath` of the token, and a `jti` not
  seen before within the window. So a stolen bound token is useless without its private key.
- presented as Bearer, a bound token is refused; with `dpop_required`, so is every unbound one.
- unbound tokens otherwise keep working as Bearer, exactly as before.

FastMCP's route guard (RequireAuthMiddleware) only recognises the Bearer scheme, so once a DPoP
request is authenticated here, the route sees its Authorization header as `Bearer <token>`: the
binding has been proven by then, and everything downstream reads `scope["user"]`. The refusals
that involve DPoP are answered here with both challenges (`Bearer resource_metadata=...` for MCP
clients' discovery, `DPoP algs=...` with the error); a plain Bearer failure still gets FastMCP's
own 401, so Bearer-only clients see no change.

Replay: a proof's `jti` is accepted once. `protect` shares the store between replicas when it
has Redis (`RedisProofReplayCache`, mcp_plugin/dpop_replay.py: RFC 9449 §11.1, one store for
every server accepting proofs for one URI); without it, proofs are remembered per process, in
memory, bounded (`MemoryProofReplayCache`), so each replica behind one URL could accept a
stolen proof once within its minute. A store that cannot answer raises
`ProofReplayUnavailable`: the request is refused with 503 `temporarily_unavailable`, not 401,
because the proof may be good and the client should retry, not discard its token or key.

Nonces (RFC 9449 §8, §9), with `nonces`: a proof must also carry a nonce this server issued
(`NonceIssuer`, stateless, shared by replicas through one secret), which bounds proofs signed
in advance to a nonce's life. A proof good but for its nonce gets 401 `use_dpop_nonce`, and it
is not spent (its `jti` is not recorded). Every response to a DPoP request, accepted or not,
carries the current nonce in `DPoP-Nonce`, so a busy client never has to be asked again.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastmcp.server.auth import AccessToken
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_plugin.dpop import ALGORITHMS, InvalidProof, NonceRequired, validate_proof
from mcp_plugin.dpop_nonce import NonceIssuer
from mcp_plugin.verifier import BrokerTokenVerifier

logger = logging.getLogger("mcp_plugin.dpop")

DEFAULT_PROOF_WINDOW_SECONDS = 60
DEFAULT_MAX_REMEMBERED_PROOFS = 100_000
ALGS = " ".join(ALGORITHMS)


class ProofReplayUnavailable(Exception):
    """The replay store cannot tell whether a proof was used before: refuse it (503)."""


class ProofReplayCache(Protocol):
    async def first_use(self, key: str, expires_at: float) -> bool:
        """Record `key` until `expires_at`; True only the first time it is seen. Raises
        `ProofReplayUnavailable` when it cannot tell (the request is refused, 503)."""


class MemoryProofReplayCache:
    """Proof `jti`s of this process, until their window closes. Full (every entry still in its
    window), it refuses: a proof that cannot be remembered is not accepted (fails closed)."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_REMEMBERED_PROOFS,
                 clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}  # insertion order ~ expiry order: iat is ~now
        self._max, self._clock = max_entries, clock

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        while self._seen:  # drop the expired head; stop at the first live one
            oldest = next(iter(self._seen))  # not list(self._seen): a copy per request
            if self._seen[oldest] > now:
                break
            del self._seen[oldest]
        if key in self._seen or len(self._seen) >= self._max:
            return False
        self._seen[key] = expires_at
        return True


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 401 answered here: which scheme's challenge carries the error, and a fixed reason;
    or a 503 when the proof could not be checked (no challenge: nothing to re-authenticate)."""

    scheme: str  # "Bearer" or "DPoP"
    error: str  # invalid_token, invalid_dpop_proof, use_dpop_nonce; temporarily_unavailable
    description: str
    status: int = 401


UNAVAILABLE = Refusal("DPoP", "temporarily_unavailable",
                      "The DPoP proof cannot be checked now; retry with a new proof.", 503)
NONCE_REQUIRED = Refusal("DPoP", "use_dpop_nonce",
                         "Resend with a new DPoP proof carrying the nonce in DPoP-Nonce.")


def _header(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name]


def _by_dpop(outcome: tuple[AccessToken, str] | Refusal | None) -> bool:
    """Whether the request used the DPoP scheme: all its refusals are in that scheme."""
    if isinstance(outcome, Refusal):
        return outcome.scheme == "DPoP"
    return outcome is not None and outcome[1] == "dpop"


def _with_nonce(send: Send, nonces: NonceIssuer) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            nonce = (b"dpop-nonce", nonces.current().encode("ascii"))
            message = {**message, "headers": [*message.get("headers", []), nonce]}
        await send(message)

    return sending


def bound_key(token: AccessToken) -> str | None:
    cnf = (token.claims or {}).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


class BrokerAuthentication:
    """ASGI middleware: sets `scope["user"]` and `scope["auth"]` as Starlette's does."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: BrokerTokenVerifier,
        mcp_path: str,
        resource_metadata_url: str,
        dpop_required: bool = False,
        proof_window: int = DEFAULT_PROOF_WINDOW_SECONDS,
        replay: ProofReplayCache | None = None,
        nonces: NonceIssuer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app, self.verifier, self.mcp_path = app, verifier, mcp_path
        self.metadata_url = resource_metadata_url
        self.dpop_required, self.window = dpop_required, proof_window
        self.replay = replay or MemoryProofReplayCache(clock=clock)
        self.nonces = nonces
        self._clock = clock
        parts = urlsplit(verifier.resource)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        outcome = await self._authenticate(scope)
        if self.nonces is not None and scope["type"] == "http" and _by_dpop(outcome):
            send = _with_nonce(send, self.nonces)  # accepted or refused: a fresh nonce
        guarded = (scope["type"] == "http" and scope.get("path") == self.mcp_path
                   and scope.get("method") != "OPTIONS")  # CORS preflights carry no token
        if guarded and (isinstance(outcome, Refusal) or (outcome is None and self.dpop_required)):
            await self._refuse(send, outcome)  # None: no credentials, no error (RFC 6750 §3.1)
            return
        if isinstance(outcome, Refusal):
            outcome = None  # elsewhere, as Starlette's: just not authenticated
        scope = dict(scope)
        if outcome is None:
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
        else:
            token, scheme = outcome
            scope["user"] = AuthenticatedUser(token)
            scope["auth"] = AuthCredentials(token.scopes)
            if scheme == "dpop":  # proven: FastMCP's route guard knows only the Bearer scheme
                scope["headers"] = [(k, v) for k, v in scope["headers"]
                                    if k.lower() != b"authorization"]
                scope["headers"].append((b"authorization", f"Bearer {token.token}".encode()))
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> tuple[AccessToken, str] | Refusal | None:
        values = _header(scope, b"authorization")
        if len(values) != 1:
            return None
        scheme, _, token = values[0].partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme not in ("bearer", "dpop") or not token:
            return None
        verified = await self.verifier.verify_bound_or_bearer(token)
        if verified is not None and verified.expires_at is not None and (
                verified.expires_at < int(self._clock())):
            verified = None  # as the SDK's BearerAuthBackend: past exp on the wall clock
        if scheme == "bearer":
            return self._bearer(verified)
        if verified is None:
            return Refusal("DPoP", "invalid_token", "The access token is invalid.")
        return await self._dpop(scope, verified)

    def _bearer(self, verified: AccessToken | None) -> tuple[AccessToken, str] | Refusal | None:
        if verified is None:
            if self.dpop_required:
                return Refusal("Bearer", "invalid_token", "The access token is invalid.")
            return None  # FastMCP's own 401, unchanged for Bearer-only clients
        if "cnf" in (verified.claims or {}):  # as verify_token: any binding, not only jkt
            logger.info("DPoP-bound token presented as Bearer (client %s)", verified.client_id)
            return Refusal("Bearer", "invalid_token",
                           "This token is bound to a key: use the DPoP scheme with a proof.")
        if self.dpop_required:
            return Refusal("Bearer", "invalid_token", "This server requires DPoP-bound tokens.")
        return verified, "bearer"

    async def _dpop(self, scope: Scope, verified: AccessToken) -> tuple[AccessToken, str] | Refusal:
        jkt = bound_key(verified)
        if jkt is None:
            return Refusal("DPoP", "invalid_token", "The access token is not DPoP-bound.")
        proofs = _header(scope, b"dpop")
        if len(proofs) != 1:
            return Refusal("DPoP", "invalid_dpop_proof", "Send exactly one DPoP proof.")
        path = scope.get("path", "")
        uri = self.verifier.resource if path == self.mcp_path else f"{self._origin}{path}"
        try:
            proof = validate_proof(proofs[0], method=scope.get("method", "GET"), uri=uri,
                                   now=self._clock(), window=self.window,
                                   access_token=verified.token,
                                   nonce=self.nonces.accepts if self.nonces else None)
        except NonceRequired as exc:  # good but for the nonce; the key is still checked first
            if not hmac.compare_digest(exc.jkt, jkt):
                return Refusal("DPoP", "invalid_dpop_proof", "The DPoP proof is invalid.")
            return NONCE_REQUIRED  # not spent: the jti is not recorded
        except InvalidProof as exc:
            logger.info("DPoP proof refused (client %s): %s", verified.client_id, exc)
            return Refusal("DPoP", "invalid_dpop_proof", "The DPoP proof is invalid.")
        if not hmac.compare_digest(proof.jkt, jkt):
            logger.warning("DPoP proof by another key than the token's (client %s)",
                           verified.client_id)
            return Refusal("DPoP", "invalid_dpop_proof", "The DPoP proof is invalid.")
        try:
            first = await self.replay.first_use(f"{proof.jkt}:{proof.jti}", proof.expires_at)
        except ProofReplayUnavailable:
            return UNAVAILABLE  # fail closed; the store logged why, once per outage
        if not first:
            logger.warning("DPoP proof replayed (client %s)", verified.client_id)
            return Refusal("DPoP", "invalid_dpop_proof", "The DPoP proof was used before.")
        return verified, "dpop"

    def challenges(self, refusal: Refusal | None) -> list[str]:
        """Both challenges (RFC 9449 §7.1), the error on the scheme it concerns."""
        bearer = [f'resource_metadata="{self.metadata_url}"']
        dpop = [f'algs="{ALGS}"', f'resource_metadata="{self.metadata_url}"']
        if refusal is not None:
            params = [f'error="{refusal.error}"', f'error_description="{refusal.description}"']
            (bearer if refusal.scheme == "Bearer" else dpop)[:0] = params
        return [f"Bearer {', '.join(bearer)}", f"DPoP {', '.join(dpop)}"]

    async def _refuse(self, send: Send, refusal: Refusal | None) -> None:
        body = b"" if refusal is None else json.dumps(
            {"error": refusal.error, "error_description": refusal.description}).encode()
        headers: list[Any] = [(b"content-length", str(len(body)).encode())]
        if body:
            headers.append((b"content-type", b"application/json"))
        status = 401 if refusal is None else refusal.status
        if status == 401:
            headers += [(b"www-authenticate", c.encode()) for c in self.challenges(refusal)]
        else:
            headers += [(b"retry-after", b"1"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
