"""Broker-shaped agent tokens for tests: a signing key pair and a token factory (contract §5).

    keys = TestKeyPair.generate()                    # Ed25519, or alg="ES256"
    tokens = BrokerTokenFactory("http://broker.test", keys=[keys], audience=RESOURCE)
    token = tokens.mint(sub="alice", roles=["sales_rep"], scopes=["crm:read"])
    token = tokens.mint(actors=["summarizer", "research-agent"])   # a re-delegated token

`mint` builds exactly what the broker builds (typ at+jwt, kid, all claims, nested `act`), and
takes overrides so a test can build every kind of bad token: `claims={"aud": "other"}` replaces
a claim, `claims={"jti": None}` removes it, `headers={"typ": "JWT"}` likewise for the header.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

_UNSET: Any = object()


@dataclass(frozen=True)
class TestKeyPair:
    """One signing key with its kid; `public_jwk()` is what the broker's JWKS publishes."""

    __test__ = False  # not a pytest test class

    kid: str
    alg: str
    private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, alg: str = "EdDSA", kid: str | None = None) -> TestKeyPair:
        key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
        if alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError("the broker signs with EdDSA or ES256")
        return cls(kid=kid or f"test-{uuid.uuid4().hex[:12]}", alg=alg, private_key=key)

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign as the broker does; `headers` overrides (None removes) header parameters."""
        header: dict[str, Any] = {"typ": "at+jwt", "kid": self.kid}
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return jwt.encode(dict(claims), self.private_key, algorithm=self.alg, headers=header)


def build_act(actors: Sequence[str]) -> dict[str, Any]:
    """Nest `act` from actors listed outermost (current actor) first, as the plugin reports."""
    if not actors:
        raise ValueError("an agent token has at least one actor")
    act: dict[str, Any] | None = None
    for actor in reversed(actors):
        act = {"sub": actor} if act is None else {"sub": actor, "act": act}
    assert act is not None
    return act


class BrokerTokenFactory:
    """Mints agent tokens as broker `issuer` would; the first key signs, all are published."""

    def __init__(
        self,
        issuer: str,
        *,
        keys: Sequence[TestKeyPair] | None = None,
        audience: str | None = None,
        ttl: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.keys = list(keys) if keys else [TestKeyPair.generate()]
        self.audience = audience
        self.ttl = ttl
        self.clock = clock

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def claims(
        self,
        *,
        sub: str = "alice",
        client_id: str | None = None,
        scopes: Sequence[str] = ("crm:read",),
        roles: Sequence[str] = ("sales_rep",),
        actors: Sequence[str] | None = None,
        audience: str | None = None,
        sid: str | None = None,
        jti: str | None = None,
        issued_at: int | None = None,
        ttl: int | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The claim set; `actors` outermost first (default: just the client)."""
        client_id = client_id or (actors[0] if actors else "research-agent")
        actors = list(actors) if actors else [client_id]
        aud = audience or self.audience
        if aud is None:
            raise ValueError("no audience: pass audience= here or to the factory")
        iat = int(self.clock()) if issued_at is None else issued_at
        built: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "act": build_act(actors),
            "roles": list(roles),
            "sid": sid or f"sid-{uuid.uuid4().hex}",
            "iat": iat,
            "nbf": iat,
            "exp": iat + (self.ttl if ttl is None else ttl),
            "jti": jti or uuid.uuid4().hex,
        }
        for name, value in (claims or {}).items():
            if value is None:
                built.pop(name, None)
            else:
                built[name] = value
        return built

    def mint(
        self,
        *,
        headers: Mapping[str, Any] | None = None,
        key: TestKeyPair | None = None,
        **claim_args: Any,
    ) -> str:
        """A signed token; keyword arguments as for `claims()`."""
        return (key or self.keys[0]).sign(self.claims(**claim_args), headers=headers)
