"""Google's REST APIs as the kit calls them: where each lives, a session carrying Application Default
Credentials, and one JSON call that turns an error answer into a message.

Every request carries the user's bearer token, so an API's address can be overridden
(MNISTKIT_<NAME>_ENDPOINT: a regional or private endpoint, a test server) only with another
https://*.googleapis.com address; a plain-http or loopback one (an emulator, the tests'
recorded-response servers) needs MNISTKIT_ALLOW_INSECURE_ENDPOINTS=1 as well.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALLOW_INSECURE_ENDPOINTS_ENV",
    "API_ENDPOINTS",
    "EndpointRefused",
    "api_endpoint",
    "call_json",
    "is_loopback",
    "session",
]

# `{region}` is filled in for regional APIs.
API_ENDPOINTS = {
    "compute": "https://compute.googleapis.com/compute/v1",
    "serviceusage": "https://serviceusage.googleapis.com/v1",
    "aiplatform": "https://{region}-aiplatform.googleapis.com/v1",
}
ALLOW_INSECURE_ENDPOINTS_ENV = "MNISTKIT_ALLOW_INSECURE_ENDPOINTS"
_GOOGLE_API_DOMAIN = ".googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class EndpointRefused(ValueError):
    """An API address override that is not a safe place to send the user's token."""


def api_endpoint(name: str, region: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The base URL of Google API `name` (in `region` for regional ones), or its safe override."""
    environ = os.environ if environ is None else environ
    variable = f"MNISTKIT_{name.upper()}_ENDPOINT"
    url = environ.get(variable)
    if not url:
        return API_ENDPOINTS[name].format(region=region)
    url = url.rstrip("/")
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # not a number
        port = -1
    if parts.scheme == "https" and host.endswith(_GOOGLE_API_DOMAIN) and port in (None, 443):
        return url
    if environ.get(ALLOW_INSECURE_ENDPOINTS_ENV) == "1" and parts.scheme in ("http", "https") and is_loopback(host):
        return url
    raise EndpointRefused(
        f"{variable}={url} refused: the request carries your Google credentials, so the endpoint must be "
        f"https://<service>{_GOOGLE_API_DOMAIN}. A local emulator on a loopback address needs "
        f"{ALLOW_INSECURE_ENDPOINTS_ENV}=1 (tests only)."
    )


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session() -> Any:
    """An HTTP session carrying Application Default Credentials."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=list(_SCOPES))
    return AuthorizedSession(credentials)


def call_json(
    http: Any, method: str, url: str, error: type[Exception], timeout_s: float = 60, **kwargs: Any
) -> dict[str, Any]:
    """One request; its decoded JSON answer, or `error` naming the call, the status and Google's message."""
    response = http.request(method, url, timeout=timeout_s, **kwargs)
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if response.status_code >= 400:
        detail = body.get("error") if isinstance(body, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        raise error(f"HTTP {response.status_code} from {method} {url}: {message or response.text[:300]}")
    return body
