"""One POST to an endpoint, safe against server-side request forgery.

A webhook URL is typed by an admin, but the host it names is resolved by whoever controls its
DNS, and can point at the database, a metadata service or the admin itself. So the address is
checked after resolution, at send time, and the connection goes to that very address: resolving
the name a second time to connect would let a short-lived DNS answer change it in between
(DNS rebinding). TLS still checks the certificate against the host name (SNI and hostname
verification use the name, the socket uses the checked address).

Built on the standard library's http.client, which follows no redirect (a 3xx is an answer like
any other, and counts as a failure), with separate connect and read timeouts and a capped read.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

# An endpoint's answer is read up to this many bytes: only its status matters.
MAX_ANSWER_BYTES = 64 * 1024


class Refused(Exception):
    """The URL may not be called: a scheme or an address the settings do not allow."""


class Unreachable(Exception):
    """No answer: the name did not resolve, the connection failed or timed out, TLS failed."""


@dataclass(frozen=True)
class Policy:
    """What a delivery may connect to, and how long it waits (from the WEBHOOKS_* settings)."""

    allow_http: bool = False
    allow_private: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 10.0


def url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why ``url`` cannot be an endpoint's address (None: it can). The address its host
    resolves to is checked at each delivery, not here: it can change."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "this is not a URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return "the URL must start with https://" if not allow_http else "use http or https"
    if not parts.hostname:
        return "the URL names no host"
    if parts.username is not None or parts.password is not None:
        return "put no user name or password in the URL; the signature authenticates optin"
    if port == 0:
        return "the URL's port is not valid"
    return None


def forbidden(address: str) -> bool:
    """Whether an address is private, loopback, link-local, reserved or multicast: anything
    but the public internet (an IPv4 address written as IPv6 is judged as itself)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int, policy: Policy) -> str:
    """The address to connect to: the first one the host resolves to, once every one of them
    passes the policy (a name that also resolves to a private address is refused whole)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise Unreachable(f"cannot resolve {host}: {error}") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise Unreachable(f"{host} resolves to no address")
    if not policy.allow_private:
        for address in addresses:
            if forbidden(address):
                raise Refused(f"{host} resolves to {address}, which is not a public address")
    return addresses[0]


def post(url: str, body: bytes, headers: dict[str, str], policy: Policy) -> int:
    """POST ``body`` to ``url`` and return the answer's status code. Raises ``Refused`` for a
    URL the policy forbids and ``Unreachable`` when no answer came."""
    problem = url_problem(url, allow_http=policy.allow_http)
    if problem is not None:
        raise Refused(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(host, port, policy)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = http.client.HTTPConnection(host, port, timeout=policy.read_timeout)
    try:
        try:
            sock = socket.create_connection((address, port), timeout=policy.connect_timeout)
        except OSError as error:
            raise Unreachable(f"cannot connect to {host} ({address}): {error}") from None
        sock.settimeout(policy.read_timeout)
        if https:
            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as error:
                sock.close()
                raise Unreachable(f"TLS with {host} failed: {error}") from None
        # http.client connects by itself only when it has no socket: this one goes to the
        # checked address, while the Host header still names the host.
        connection.sock = sock
        try:
            connection.request("POST", target, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise Unreachable(f"no answer from {host}: {error or type(error).__name__}") from None
        return answer.status
    finally:
        connection.close()
