"""HTTPS for the agent: a self-signed certificate made at first start, pinned by its user.

The bearer token must not cross the lab network in clear. There is no CA on a lab
network, so the agent makes its own certificate once (ECDSA P-256, owner-only key in the
data directory) and `bioreactor-edge token` shows its SHA-256 fingerprint beside the token;
Home Assistant pins that fingerprint at pairing (trust on first use) and refuses a changed
certificate. The fingerprint is the SHA-256 of the certificate's DER bytes, the digest
aiohttp's `Fingerprint` checks.

The certificate is made with the `openssl` command (Debian's ca-certificates depends on
it, so every board image has it) rather than a Python package that has no wheels for the
BeagleBone's armhf.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import ssl
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .durable import fsync_directory

COMMON_NAME = "bioreactor-edge"
CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
# Pinned, never validated against a CA or a date: the certificate lives as long as the board.
VALID_DAYS = 36500


class TlsError(Exception):
    """The certificate cannot be made or used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_path: Path
    key_path: Path
    fingerprint: str  # "AB:CD:..." (SHA-256 of the DER certificate)


def fingerprint_of(cert_pem: str) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as colon-separated uppercase hex."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem)
    except ValueError as err:
        raise TlsError(f"not a PEM certificate: {err}") from None
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def load_or_create_certificate(data_dir: Path, common_name: str = COMMON_NAME) -> Certificate:
    """The agent's certificate, made on first use; the key file must be owner-only."""
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    if not (cert_path.exists() and key_path.exists()):
        _create(data_dir, common_name)
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TlsError(
            f"{key_path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {key_path}`"
        )
    return Certificate(cert_path, key_path, fingerprint_of(cert_path.read_text("ascii")))


def _create(data_dir: Path, common_name: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("the `openssl` command is missing: install it, or set [api] tls = false")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    new_cert, new_key = data_dir / f"{CERT_FILE}.new", data_dir / f"{KEY_FILE}.new"
    # openssl writes the key with the umask's mode: make it owner-only before any byte lands.
    new_key.unlink(missing_ok=True)
    os.close(os.open(new_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                str(VALID_DAYS),
                "-subj",
                f"/CN={common_name}",
                "-keyout",
                str(new_key),
                "-out",
                str(new_cert),
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as err:
        for path in (new_cert, new_key):
            path.unlink(missing_ok=True)
        detail = err.stderr.decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else str(err)
        raise TlsError(f"openssl could not make a certificate: {reason}") from None
    for path in (new_cert, new_key):
        with contextlib.suppress(OSError), path.open("rb") as file:
            os.fsync(file.fileno())
    # The key first: a certificate without its key would be useless on the next start.
    new_key.replace(data_dir / KEY_FILE)
    new_cert.replace(data_dir / CERT_FILE)
    fsync_directory(data_dir)


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """A server context for `certificate` (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
    except (ssl.SSLError, OSError) as err:
        raise TlsError(
            f"cannot use {certificate.cert_path} with {certificate.key_path} ({err}); "
            "delete both to make a new certificate (Home Assistant must then be paired again)"
        ) from None
    return context
