"""The web console at /admin/: sign-in with the upstream issuer, one page over the admin API."""

from broker.http.console.routes import COOKIE_NAME, console_router

__all__ = ["COOKIE_NAME", "console_router"]
