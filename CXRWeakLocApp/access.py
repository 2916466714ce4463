"""Who may use the app: anyone on this machine at 127.0.0.1, otherwise token holders only.

Bound to 127.0.0.1 (the default) the app is reachable from this machine only. Bound to
any other address it needs a token: the first page is opened as ``/?token=...``, which
sets a cookie for the page's own later requests (scripts, the websocket), and every
request carrying neither is refused (403) before trame sees it.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

__all__ = ["COOKIE", "LOCAL_HOSTS", "needs_token", "new_token", "token_middleware"]

#: Addresses reachable from this machine only, where no token is needed.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "cxrweakloc_token"


def needs_token(host: str) -> bool:
    return host not in LOCAL_HOSTS


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_middleware(token: str):
    """An aiohttp middleware refusing requests without ``token`` (query or cookie)."""
    expected = token.encode()

    def valid(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), expected)

    @web.middleware
    async def check(request: web.Request, handler):
        if valid(request.cookies.get(COOKIE)):
            return await handler(request)
        if not valid(request.query.get("token")):
            raise web.HTTPForbidden(text="cxrweakloc app: open the address with its ?token=\n")
        response = await handler(request)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check
