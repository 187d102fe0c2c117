"""When a cached agent token is due for a new exchange (pure, so it is tested with numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.client.exchange import ExchangedToken

DEFAULT_REFRESH_SKEW = 30.0
DEFAULT_REFRESH_FRACTION = 0.1


def refresh_at(obtained_at: float, expires_in: int | None, *,
               skew: float = DEFAULT_REFRESH_SKEW,
               fraction: float = DEFAULT_REFRESH_FRACTION) -> float | None:
    """The moment to re-exchange: `min(skew, fraction * lifetime)` before expiry, so a short
    token is not renewed at once and a long one not too late. None without `expires_in`:
    such a token is renewed only when the resource answers 401."""
    if expires_in is None:
        return None
    return obtained_at + expires_in - min(skew, fraction * expires_in)


@dataclass(frozen=True, slots=True)
class CachedToken:
    result: ExchangedToken = field(repr=False)
    refresh_at: float | None

    @property
    def token(self) -> str:
        return self.result.access_token

    def is_due(self, now: float) -> bool:
        return self.refresh_at is not None and now >= self.refresh_at
