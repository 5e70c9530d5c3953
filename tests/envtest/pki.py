"""Certificates for a loopback control plane: a CA, the serving cert, client certs, an SA key pair.

Kept apart from the process handling so the control plane reads as "write PKI, start
processes": every file lands in one folder that the control plane owns.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

_VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path  # the service-account signing key (RSA: what every token verifier takes)
    sa_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _sign(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          sans: list[x509.GeneralName] | None = None,
          usage: list[x509.ObjectIdentifier] | None = None) -> bytes:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + _VALID)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                              critical=True))  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_pki(folder: Path) -> Pki:
    """Every certificate and key the control plane and its admin client need, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kuberec-envtest-ca")
    pki = Pki(*(folder / n for n in ("ca.crt", "server.crt", "server.key", "admin.crt",
                                     "admin.key", "sa.key", "sa.pub")))  # fmt: skip
    pki.ca_cert.write_bytes(_sign(ca_name, ca_key, ca_name, ca_key, ca=True))

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.DNSName("localhost"), x509.DNSName("kubernetes"),
                                    x509.DNSName("kubernetes.default.svc")]  # fmt: skip
    server_auth = [x509.ExtendedKeyUsageOID.SERVER_AUTH]
    pki.server_cert.write_bytes(
        _sign(_name("kube-apiserver"), server_key, ca_name, ca_key, sans=sans, usage=server_auth)
    )
    pki.server_key.write_bytes(_pem_key(server_key))

    # system:masters: the harness (and kube-controller-manager) act as cluster admins; the
    # operator never uses this identity.
    admin_key = ec.generate_private_key(ec.SECP256R1())
    pki.admin_cert.write_bytes(_sign(_name("kuberec-envtest-admin", "system:masters"), admin_key,
                                     ca_name, ca_key,
                                     usage=[x509.ExtendedKeyUsageOID.CLIENT_AUTH]))  # fmt: skip
    pki.admin_key.write_bytes(_pem_key(admin_key))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.sa_key.write_bytes(_pem_key(sa_key))
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for path in (pki.server_key, pki.admin_key, pki.sa_key):
        path.chmod(0o600)
    return pki
