"""A throwaway certificate authority made with openssl.

Why this exists: the apiserver needs a serving cert and client certs, and the
Kafka SASL_SSL listener a server cert, all trusted through one CA file that the
tests (and the exporter under test) are given. openssl is always on the box;
no Python crypto dependency is needed.
"""
from __future__ import annotations

from pathlib import Path

from .proc import run


class CA:
    """A CA in `directory` (ca.crt, ca.key) that issues server and client certs."""

    def __init__(self, directory: Path | str, name: str = "kee-test-ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        if not self.cert.exists():
            run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
                 "-subj", f"/CN={name}", "-keyout", self.key, "-out", self.cert,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])

    def issue(self, stem: str, cn: str, *, orgs: tuple[str, ...] = (), server: bool = False,
              client: bool = False, sans: tuple[str, ...] = ("DNS:localhost", "IP:127.0.0.1")) -> tuple[Path, Path]:
        """Issue `<stem>.crt`/`<stem>.key` (PKCS#8 PEM); returns (cert, key)."""
        crt, key, csr = self.dir / f"{stem}.crt", self.dir / f"{stem}.key", self.dir / f"{stem}.csr"
        subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subj,
             "-keyout", key, "-out", csr])
        usages = []
        if server:
            usages.append("serverAuth")
        if client:
            usages.append("clientAuth")
        ext = self.dir / f"{stem}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if usages:
            lines.append("extendedKeyUsage=" + ",".join(usages))
        if server and sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
             "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", ext, "-out", crt])
        return crt, key

    def pkcs12(self, stem: str, password: str) -> Path:
        """Bundle `<stem>.crt`/`.key` (+ the CA) into `<stem>.p12` (for Java keystores)."""
        out = self.dir / f"{stem}.p12"
        run(["openssl", "pkcs12", "-export", "-in", self.dir / f"{stem}.crt", "-inkey", self.dir / f"{stem}.key",
             "-certfile", self.cert, "-name", stem, "-passout", f"pass:{password}", "-out", out])
        return out


def rsa_keypair(directory: Path | str, stem: str) -> tuple[Path, Path]:
    """An RSA key pair (`<stem>.key` private, `<stem>.pub` public), e.g. for service-account tokens."""
    d = Path(directory)
    key, pub = d / f"{stem}.key", d / f"{stem}.pub"
    run(["openssl", "genrsa", "-out", key, "2048"])
    run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub])
    return key, pub
