"""DICOM TLS for the node: the SCP's and the sender's SSL contexts (pynetdicom takes Python ``ssl`` contexts).

- Listening (``--tls-cert``, ``--tls-key``): the node presents its certificate; with ``--tls-ca`` it also requires
  every peer to present a certificate signed by that CA (mutual TLS, the authentication AE titles do not give).
- Sending (``--destination-tls-ca``): the destination's certificate must be signed by that CA and name its host;
  the node presents its own certificate when it has one.

Example::

    scp_ctx = server_context("node.crt", "node.key", ca="hospital-ca.crt")
    scu_ctx = client_context("hospital-ca.crt", cert="node.crt", key="node.key")
"""

from __future__ import annotations

import os
import ssl

__all__ = ["client_context", "server_context"]


def _readable(*paths: str | os.PathLike | None) -> None:
    for path in paths:
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"TLS file not found: {path}")


def server_context(
    cert: str | os.PathLike, key: str | os.PathLike, ca: str | os.PathLike | None = None
) -> ssl.SSLContext:
    """The listening side: our certificate; with ``ca``, peers must present a certificate it signed."""
    _readable(cert, key, ca)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca is not None:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    ca: str | os.PathLike, cert: str | os.PathLike | None = None, key: str | os.PathLike | None = None
) -> ssl.SSLContext:
    """The sending side: the peer's certificate must be signed by ``ca`` and match its host; ours if given."""
    _readable(ca, cert, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx
