"""HTTPS: the self-signed certificate made at first start, its fingerprint, a pinned client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bioreactor_edge.cli import main
from bioreactor_edge.tls import (
    CERT_FILE,
    KEY_FILE,
    TlsError,
    fingerprint_of,
    load_or_create_certificate,
    server_context,
)
from tests.support.agent_process import TOKEN, AgentProcess


def test_certificate_made_once_owner_only(tmp_path: Path) -> None:
    first = load_or_create_certificate(tmp_path / "data")
    assert (first.key_path.stat().st_mode & 0o777) == 0o600
    again = load_or_create_certificate(tmp_path / "data")
    assert again == first  # the same certificate: a pinned fingerprint stays valid
    # The fingerprint is what openssl itself reports (SHA-256 of the DER certificate).
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(first.cert_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1] == first.fingerprint
    assert not list((tmp_path / "data").glob("*.new"))
    server_context(first)  # the pair loads


def test_shared_key_refused(tmp_path: Path) -> None:
    load_or_create_certificate(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o640)
    with pytest.raises(TlsError, match="chmod 600"):
        load_or_create_certificate(tmp_path)


def test_garbage_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="not a PEM certificate"):
        fingerprint_of("nonsense")
    load_or_create_certificate(tmp_path)
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    (tmp_path / CERT_FILE).write_text(pem)
    certificate = load_or_create_certificate(tmp_path)
    with pytest.raises(TlsError, match="delete both"):
        server_context(certificate)


def test_missing_openssl_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TlsError, match="tls = false"):
        load_or_create_certificate(tmp_path / "data")


def test_token_command_shows_the_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["token", "--config", str(config)]) == 0
    token, line = capsys.readouterr().out.strip().splitlines()
    fingerprint = load_or_create_certificate(tmp_path / "data").fingerprint
    assert line == f"certificate SHA-256 fingerprint: {fingerprint}"
    assert len(token) >= 43
    config.write_text(f'data_dir = "{tmp_path / "plain"}"\n[api]\ntls = false\n')
    assert main(["token", "--config", str(config)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert not (tmp_path / "plain" / CERT_FILE).exists()


@pytest.fixture
def tls_agent(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """`bioreactor-edge simulate --tls` on loopback: (port, certificate fingerprint)."""
    agent = AgentProcess(sys.executable, tmp_path, rate_hz=5.0, extra_args=("--tls",))
    agent.start()
    try:
        for _ in range(300):
            if (agent.agent_dir / CERT_FILE).exists():
                break
            time.sleep(0.1)
        yield agent.port, load_or_create_certificate(agent.agent_dir).fingerprint
    finally:
        agent.stop()


async def test_pinned_client_reaches_the_agent_and_a_wrong_pin_fails(
    tls_agent: tuple[int, str],
) -> None:
    port, fingerprint = tls_agent
    pinned = aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", "")))
    url = f"https://127.0.0.1:{port}/api/v1/status"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url, headers=headers, ssl=pinned) as response:
                    assert response.status == 200
                    assert (await response.json())["journal"]["epoch"]
                    break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the agent never answered over HTTPS")
        wrong = aiohttp.Fingerprint(bytes(32))
        with pytest.raises(aiohttp.ServerFingerprintMismatch):
            await session.get(url, headers=headers, ssl=wrong)
        # No plain HTTP on an HTTPS port.
        with pytest.raises(aiohttp.ClientError):
            await session.get(url.replace("https", "http"), headers=headers)


def test_status_command_trusts_the_agents_certificate(
    tls_agent: tuple[int, str], tmp_path: Path
) -> None:
    port, _ = tls_agent
    agent_dir = tmp_path / "agent-0"
    (agent_dir / "token").write_text(TOKEN)
    (agent_dir / "token").chmod(0o600)
    config = tmp_path / "status.toml"
    config.write_text(f'data_dir = "{agent_dir}"\n[api]\nport = {port}\n')
    for _ in range(300):
        result = subprocess.run(
            [sys.executable, "-m", "bioreactor_edge", "status", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        if "journal epoch" in result.stdout:
            break
        time.sleep(0.1)
    assert "journal epoch" in result.stdout, result.stdout
