"""Prints the Python requirements Home Assistant would pip-install at start-up.

Home Assistant installs an integration's requirements (and those of its
dependencies and after-dependencies) the first time it loads it. A test that
starts `hass --skip-pip` on a venv holding only the core package falls into
recovery mode, because the frontend's own package is missing. The toolchain
installs this list into the cached venv instead, so every start is offline and
deterministic.

Roots: the integrations Home Assistant always sets up, the top-level keys of the
given configuration.yaml files, the given custom integrations' manifests, and the
integrations whose entries onboarding creates.
The closure follows the same rules as `homeassistant.requirements`. Runs in the
HA venv.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import homeassistant.components
from homeassistant.bootstrap import DEFAULT_INTEGRATIONS
from homeassistant.requirements import DISCOVERY_INTEGRATIONS

BUILT_IN = Path(homeassistant.components.__file__).parent
# Onboarding's core_config step adds entries of these (the demo removes them again,
# a lab may have no internet); without their packages their setup fails loudly.
ONBOARDING_INTEGRATIONS = {"met", "radio_browser", "google_translate"}
# A top-level key of configuration.yaml (`recorder:`, `automation: !include ...`).
TOP_LEVEL_KEY = re.compile(r"^([a-z_][a-z0-9_]*):", re.MULTILINE)


def configured_domains(configuration: Path) -> set[str]:
    return set(TOP_LEVEL_KEY.findall(configuration.read_text())) - {"homeassistant"}


def load_manifest(domain: str, custom: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if domain in custom:
        return custom[domain]
    path = BUILT_IN / domain / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def requirement_closure(roots: set[str], custom: dict[str, dict[str, Any]]) -> list[str]:
    requirements: set[str] = set()
    seen: set[str] = set()
    todo = sorted(roots)
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = load_manifest(domain, custom)
        if manifest is None:
            raise SystemExit(f"no integration named {domain!r} (from a configuration file)")
        requirements.update(manifest.get("requirements", []))
        todo.extend(manifest.get("dependencies", []))
        # An after-dependency may be absent (HA tolerates that for custom integrations).
        todo.extend(
            dep
            for dep in manifest.get("after_dependencies", [])
            if load_manifest(dep, custom) is not None
        )
        todo.extend(
            discovery
            for discovery, keys in DISCOVERY_INTEGRATIONS.items()
            if any(key in manifest for key in keys)
        )
    return sorted(requirements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configuration", type=Path, action="append", default=[])
    parser.add_argument("--custom-integration", type=Path, action="append", default=[])
    args = parser.parse_args()
    custom = {
        manifest["domain"]: manifest
        for manifest in (
            json.loads((path / "manifest.json").read_text()) for path in args.custom_integration
        )
    }
    roots = set(DEFAULT_INTEGRATIONS) | ONBOARDING_INTEGRATIONS | set(custom)
    for configuration in args.configuration:
        roots |= configured_domains(configuration)
    print("\n".join(requirement_closure(roots, custom)))


if __name__ == "__main__":
    main()
