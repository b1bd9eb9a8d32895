"""DICOM TLS: the SCP requires a client certificate from the CA; the sender verifies the destination's."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

from tests.serve.node_helpers import free_port, send_series, synthetic_series
from unet_med.serve.queue import JobQueue
from unet_med.serve.scp import StorageSCP
from unet_med.serve.sender import DeliveryError, Destination, send_file
from unet_med.serve.tls import client_context, server_context

pytest.importorskip("pynetdicom")


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, and a certificate for 127.0.0.1 (the node) and one for a client, each with its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])

    def cert(name, key, issuer_key, ca=False, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    paths = {}

    def save(stem, certificate, key):
        paths[f"{stem}.crt"] = folder / f"{stem}.crt"
        paths[f"{stem}.crt"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[f"{stem}.key"] = folder / f"{stem}.key"
        paths[f"{stem}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    save("ca", cert("test CA", ca_key, ca_key, ca=True), ca_key)
    node_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    save("node", cert("node", node_key, ca_key, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), node_key)
    save("client", cert("scanner", client_key, ca_key), client_key)
    return paths


def test_tls_node_takes_only_clients_with_a_certificate_from_its_ca(tmp_path):
    certs = _certificates(tmp_path)
    series = synthetic_series(tmp_path / "in", seed=6)
    ctx = server_context(certs["node.crt"], certs["node.key"], ca=certs["ca.crt"])
    queue = JobQueue(tmp_path / "work" / "q.sqlite")
    scp = StorageSCP(tmp_path / "work", queue, port=free_port(), reserve_bytes=0, ssl_context=ctx)
    scp.start()
    node = Destination("UNETMED", "127.0.0.1", scp.address[1])
    first = sorted(series.iterdir())[0]
    try:
        assert send_series(series, scp.address[1]) == [-1]  # plain TCP: no association
        with pytest.raises(DeliveryError, match="no association"):  # TLS, but no client certificate
            send_file(node, "SCANNER", first, tls=client_context(certs["ca.crt"]))
        with_cert = client_context(certs["ca.crt"], certs["client.crt"], certs["client.key"])
        send_file(node, "SCANNER", first, tls=with_cert)
    finally:
        scp.stop()
    (job,) = queue.jobs()
    assert job.instances == 1


def test_missing_tls_files_are_named():
    with pytest.raises(FileNotFoundError, match=r"TLS file not found: nope\.crt"):
        server_context("nope.crt", "nope.key")
