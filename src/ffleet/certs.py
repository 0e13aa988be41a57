"""A private CA for one fleet: the master's server certificate and each node's client one.

`init` makes the CA and the master's certificate for the names and addresses agents use to reach
it; `issue_node` signs a client certificate for one node, for a master that requires them
(mTLS). Keys are ECDSA P-256, written readable by the owner only; `ca-key.pem` signs every
certificate of the fleet, so it stays on the machine that runs these commands.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest server certificate lifetime clients commonly accept


class CertsError(Exception):
    """The files are not where, or not what, the command needs."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ffleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _leaf(
    directory: Path,
    stem: str,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> Path:
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), ca_cert.subject, key, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(directory / f"{stem}-key.pem", key)
    path = directory / f"{stem}.pem"
    _write_cert(path, cert)
    return path


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / "ca-key.pem").read_bytes(), password=None
        )
    except (OSError, ValueError) as exc:
        raise CertsError(f"no usable CA in {directory} ({exc}); run `ffleet certs init`") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{directory / 'ca-key.pem'} is not an ffleet CA key")
    return cert, key


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def init(directory: Path, hosts: list[str]) -> list[Path]:
    """A new CA and the master's certificate for `hosts` (names and addresses)."""
    if not hosts:
        raise CertsError("give at least one --host: the name or address agents use")
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.pem").exists() or (directory / "ca-key.pem").exists():
        raise CertsError(
            f"{directory} already holds a CA; certificates it signed would stop working"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name("ffleet CA")
    ca = (
        _builder(subject, subject, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca-key.pem", key)
    _write_cert(directory / "ca.pem", ca)
    master = _leaf(
        directory, "master", hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, _subject_names(hosts)
    )
    return [directory / "ca.pem", directory / "ca-key.pem", master, directory / "master-key.pem"]


def issue_node(directory: Path, name: str) -> list[Path]:
    """A client certificate for node `name`, signed by the CA in `directory`."""
    if not name or "/" in name or name.startswith("."):
        raise CertsError(f"{name!r} cannot name a file: use letters, digits, '-' and '_'")
    if name in ("ca", "master"):
        raise CertsError(f"{name!r} is taken by the CA's own files")
    cert = _leaf(directory, name, name, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return [cert, directory / f"{name}-key.pem"]
