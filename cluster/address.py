"""Which Ray address a run was given, and whether it may use it.

A run joins Ray through one of: nothing or ``local`` (a cluster started here), ``auto`` (the
one on this machine, or ``RAY_ADDRESS``), a GCS ``host:port`` (a cluster this machine is part
of: the address ``ray job submit`` gives a job), or a Ray Client ``ray://host:port``. An
``http(s)://`` address is Ray's job API (the dashboard port), which ``ray job submit`` talks to
and which a run cannot join. The job API and the Ray Client run any code they are sent, so a
non-loopback one is refused unless the user passes ``--allow-remote-address``: the safe way
is an SSH tunnel (``ray dashboard ray_cluster.yaml``) to ``http://127.0.0.1:8265``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from laserkv.errors import ConfigError, LaserKVError

ALLOW_FLAG = "--allow-remote-address"
TUNNEL = "open a tunnel first (ray dashboard ray_cluster.yaml)"
ADDRESS_FORMS = "auto, host:port, ray://host:port or http(s)://host:port"
ENV = "RAY_ADDRESS"


class AddressKind(str, Enum):
    """What an address points at."""

    LOCAL = "local"  # a Ray cluster started by this process
    AUTO = "auto"  # the cluster on this machine, or RAY_ADDRESS
    GCS = "gcs"  # host:port of a cluster's GCS
    CLIENT = "client"  # ray://host:port, Ray Client (runs any code it is sent)
    JOB = "job"  # http(s)://host:port, Ray's job API (runs any code it is sent)


class AddressError(LaserKVError, ValueError):
    """An address the run refuses: one line saying why and what to do instead."""


@dataclass(frozen=True)
class RayAddress:
    """A parsed address: ``text`` as given, its ``kind`` and ``host`` (None for local/auto)."""

    text: str | None
    kind: AddressKind
    host: str | None = None

    @property
    def loopback(self) -> bool:
        """Whether the address stays on this machine (local and auto always do)."""
        return self.host is None or is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8, ``::1`` or an IPv4-mapped 127.x; a name is never resolved.

    Args:
        host: a host name or IP literal, with or without IPv6 brackets.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name may resolve anywhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_address(address: str | None) -> RayAddress:
    """Classify ``address`` (see the module docstring).

    Raises:
        ConfigError: not one of the forms Ray accepts here, or no port.
    """
    if address is None or address == "local":
        return RayAddress(address, AddressKind.LOCAL)
    if address == "auto":
        return RayAddress(address, AddressKind.AUTO)
    if "://" in address:
        scheme = address.split("://", 1)[0].lower()
        kinds = {"ray": AddressKind.CLIENT, "http": AddressKind.JOB, "https": AddressKind.JOB}
        parts = urlsplit(address)
        if scheme not in kinds or not parts.hostname:
            raise ConfigError("address", address, ADDRESS_FORMS)
        return RayAddress(address, kinds[scheme], parts.hostname)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("address", address, ADDRESS_FORMS)
    return RayAddress(address, AddressKind.GCS, host.strip("[]"))


def address_ray_uses(address: str | None, environ: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The address ``ray.init(address=address)`` really joins, and where it came from: Ray
    replaces ``None`` and ``auto`` by a non-empty ``RAY_ADDRESS`` (``ray._private.worker.init``);
    any other address is used as given (source "")."""
    value = (os.environ if environ is None else environ).get(ENV)
    if value and address in (None, "auto") and value != address:
        return value, ENV
    return address, ""


def check_address(address: str | None, allow_remote: bool = False, source: str = "") -> RayAddress:
    """The address a run may join, or why not: the one Ray will use (``address_ray_uses``:
    ``auto`` or no address with ``RAY_ADDRESS`` set is checked as ``RAY_ADDRESS``).

    Args:
        address: as given (``--address``, a run file, or ``RAY_ADDRESS``).
        allow_remote: the user passed ``--allow-remote-address``.
        source: where the address came from, named in the message (e.g. ``RAY_ADDRESS``).

    Raises:
        AddressError: a non-loopback job API or Ray Client address without ``allow_remote``;
            any job API address (a run cannot join one: it is where ``ray job submit`` sends
            the run).
        ConfigError: an address of no known form.
    """
    resolved, resolved_source = address_ray_uses(address)
    if resolved != address:  # Ray will replace ``auto`` by RAY_ADDRESS: check that one
        via = f"{resolved_source}, which Ray uses for address {address}" if address else resolved_source
        return check_address(resolved, allow_remote, via)
    parsed = parse_address(address)
    named = f"{address} ({source})" if source else f"{address}"
    if parsed.kind is AddressKind.JOB and not (parsed.loopback or allow_remote):
        raise AddressError(
            f"refusing job address {named}: the job API runs any code it is sent; {TUNNEL} "
            f"and use http://127.0.0.1:8265, or pass {ALLOW_FLAG}"
        )
    if parsed.kind is AddressKind.CLIENT and not (parsed.loopback or allow_remote):
        raise AddressError(
            f"refusing Ray Client address {named}: the Ray Client runs any code it is sent; "
            f"{TUNNEL} and submit the run with ray job submit --address http://127.0.0.1:8265, "
            f"or pass {ALLOW_FLAG}"
        )
    if parsed.kind is AddressKind.JOB:
        raise AddressError(
            f"job address {named} is Ray's job API, which a run cannot join: submit the run to it "
            f"(ray job submit --address {address} --working-dir . -- python -m cluster.job ...), "
            "or give auto or the cluster's host:port"
        )
    return parsed
