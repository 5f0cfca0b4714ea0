"""Certificates and keys for a local control plane: a CA, the API server's serving cert,
an admin client cert (group system:masters), the service-account signing key, the aggregation
layer's front-proxy CA and client cert, and a serving/client cert for add-on processes on
127.0.0.1 (KEDA's metrics API server and its gRPC link to the operator)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def front_proxy_ca(self) -> Path:
        return self.directory / "front-proxy-ca.crt"

    @property
    def front_proxy_client_cert(self) -> Path:
        return self.directory / "front-proxy-client.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        return self.directory / "front-proxy-client.key"

    @property
    def addon_dir(self) -> Path:
        """ca.crt, tls.crt, tls.key: the layout KEDA reads from its --cert-dir."""
        return self.directory / "addons"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    subject: x509.Name,
    issuer: tuple[rsa.RSAPrivateKey, x509.Certificate],
    usages: list[x509.ObjectIdentifier],
    sans: x509.SubjectAlternativeName | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    issuer_key, issuer_cert = issuer
    builder = _builder(subject, issuer_cert.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage(usages), critical=False
    )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return key, builder.sign(issuer_key, hashes.SHA256())


FRONT_PROXY_CLIENT = "front-proxy-client"
LOOPBACK_SANS = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def create(directory: Path, addon_dns_names: tuple[str, ...] = ()) -> Pki:
    """Creates a fresh set of credentials (once per cluster start). The add-on certificate also
    names `addon_dns_names`: the aggregation layer checks the Service's DNS name
    (`<service>.<namespace>.svc`) even where the Service resolves to localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca = _ca("recmodel-devcluster-ca")
    _write_key(pki.ca_key, ca[0])
    _write_cert(pki.ca_cert, ca[1])

    in_cluster = [
        x509.DNSName(name)
        for name in (
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    server_sans = x509.SubjectAlternativeName(
        [*LOOPBACK_SANS, *in_cluster, x509.IPAddress(ipaddress.ip_address("10.96.0.1"))]
    )
    server_key, server_cert = _leaf(_name("kube-apiserver"), ca, [ExtendedKeyUsageOID.SERVER_AUTH], server_sans)
    _write_key(pki.server_key, server_key)
    _write_cert(pki.server_cert, server_cert)

    admin_key, admin_cert = _leaf(_name("recmodel-admin", "system:masters"), ca, [ExtendedKeyUsageOID.CLIENT_AUTH])
    _write_key(pki.admin_key, admin_key)
    _write_cert(pki.admin_cert, admin_cert)

    sa_key = _new_key()
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    # The aggregation layer: the API server proxies to extension API servers (KEDA's metrics
    # server) with this client cert; they trust the front-proxy CA for the user it asserts.
    front_proxy = _ca("recmodel-devcluster-front-proxy-ca")
    _write_cert(pki.front_proxy_ca, front_proxy[1])
    proxy_key, proxy_cert = _leaf(_name(FRONT_PROXY_CLIENT), front_proxy, [ExtendedKeyUsageOID.CLIENT_AUTH])
    _write_key(pki.front_proxy_client_key, proxy_key)
    _write_cert(pki.front_proxy_client_cert, proxy_cert)

    pki.addon_dir.mkdir(exist_ok=True)
    addon_key, addon_cert = _leaf(
        _name("recmodel-devcluster-addon"),
        ca,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        x509.SubjectAlternativeName([*LOOPBACK_SANS, *(x509.DNSName(n) for n in addon_dns_names)]),
    )
    _write_key(pki.addon_dir / "tls.key", addon_key)
    _write_cert(pki.addon_dir / "tls.crt", addon_cert)
    _write_cert(pki.addon_dir / "ca.crt", ca[1])
    return pki


def _load_ca(pki: Pki) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())


def issue_node(pki: Pki, node_name: str, node_ip: str, directory: Path) -> None:
    """A real node's credentials, from the cluster's CA: the kubelet's client certificate (user
    `system:node:<name>` in group `system:nodes`, what the Node authorizer expects) and its
    serving certificate for `node_ip`, where the API server reaches it for logs and exec."""
    issue_client(pki, f"system:node:{node_name}", "system:nodes", directory / "kubelet-client")
    issue_server(pki, node_name, node_ip, directory / "kubelet-serving")


def issue_client(pki: Pki, user: str, group: str | None, stem: Path) -> tuple[Path, Path]:
    """A client certificate from the cluster's CA for `user` (in `group`): `<stem>.crt` and
    `<stem>.key`, returned in that order."""
    key, cert = _leaf(_name(user, group), _load_ca(pki), [ExtendedKeyUsageOID.CLIENT_AUTH])
    return _write_pair(stem, key, cert)


def _write_pair(stem: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def issue_server(pki: Pki, name: str, ip: str, stem: Path) -> tuple[Path, Path]:
    """A serving certificate from the cluster's CA for `name` and `ip`: `<stem>.crt` and
    `<stem>.key`, returned in that order."""
    sans = x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(ip))])
    key, cert = _leaf(_name(name), _load_ca(pki), [ExtendedKeyUsageOID.SERVER_AUTH], sans)
    return _write_pair(stem, key, cert)
