"""Reading `application/x-www-form-urlencoded` bodies the way RFC 6749 requires.

Parameters sent more than once are an error (RFC 6749 §3.1, §3.2); so are bodies over the
configured size (checked on the declared length and again while streaming), non-UTF-8 text,
and parameters without a value. Nothing from the body is echoed back except a parameter name.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from broker.errors import InvalidRequest, RequestTooLarge

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32


async def read_form(request: Request, max_bytes: int) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise InvalidRequest(f"The request body must be {FORM_TYPE}.")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise RequestTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLarge()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The request body is not a valid form.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"The {name[:40]!r} parameter is repeated.")
        if value == "":
            continue  # RFC 6749 §3.1: parameters sent without a value are treated as omitted
        form[name] = value
    return form
