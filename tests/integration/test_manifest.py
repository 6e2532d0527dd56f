"""hassfest cannot run here: check the files HACS and HA read against their rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from awesomeversion import AwesomeVersion
from homeassistant.const import __version__ as HA_VERSION

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "custom_components" / "bioreactor"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_single_integration_folder() -> None:
    folders = [p.name for p in (ROOT / "custom_components").iterdir() if p.is_dir()]
    assert [f for f in folders if f != "__pycache__"] == ["bioreactor"]


def test_manifest_keys_and_order() -> None:
    manifest = _json(INTEGRATION / "manifest.json")
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"], "hassfest wants domain, name first"
    assert keys[2:] == sorted(keys[2:]), "the other keys must be in alphabetical order"
    assert manifest["domain"] == "bioreactor" == INTEGRATION.name
    for key in ("version", "codeowners", "documentation", "issue_tracker", "iot_class"):
        assert manifest.get(key), f"manifest.json needs {key}"
    assert AwesomeVersion(manifest["version"]).valid
    assert manifest["iot_class"] == "local_polling"
    assert manifest["config_flow"] is True
    assert manifest["dependencies"] == ["recorder"]
    assert "_bioreactor._tcp.local." in manifest["zeroconf"]
    assert all(re.fullmatch(r"@[\w-]+", owner) for owner in manifest["codeowners"])
    for key in ("documentation", "issue_tracker"):
        assert manifest[key].startswith("https://")


def test_hacs_json_pins_the_tested_home_assistant() -> None:
    hacs = _json(ROOT / "hacs.json")
    assert hacs["name"]
    assert hacs["homeassistant"] == HA_VERSION, (
        "hacs.json must require the version tests run against"
    )
    pinned = (ROOT / "requirements_test.txt").read_text(encoding="utf-8")
    assert re.search(r"^pytest-homeassistant-custom-component==[\d.]+$", pinned, re.M)


def test_translations_are_complete() -> None:
    en = _json(INTEGRATION / "translations" / "en.json")
    config = en["config"]
    assert config["step"]["user"]["data"], "the user step needs field labels"
    for step in config["step"].values():
        for field, label in step.get("data", {}).items():
            assert isinstance(label, str) and label, f"label of {field} is empty"
    source = "\n".join(p.read_text(encoding="utf-8") for p in INTEGRATION.glob("*.py"))
    # Every translation_key used in code has a translation.
    for key in set(re.findall(r'translation_key="([a-z0-9_]+)"', source)):
        found = (
            any(key in platform for platform in en.get("entity", {}).values())
            or key in en.get("exceptions", {})
            or key in en.get("issues", {})
        )
        assert found, f"translation_key {key!r} has no entry in translations/en.json"


def test_services_yaml_matches_translations() -> None:
    services_file = INTEGRATION / "services.yaml"
    if not services_file.exists():
        assert "async_register" not in (INTEGRATION / "__init__.py").read_text(encoding="utf-8")
        return
    services = yaml.safe_load(services_file.read_text(encoding="utf-8")) or {}
    en = _json(INTEGRATION / "translations" / "en.json")
    for name, spec in services.items():
        assert re.fullmatch(r"[a-z_]+", name)
        text = en["services"][name]
        assert text["name"] and text["description"]
        for field in (spec or {}).get("fields", {}):
            assert text["fields"][field]["name"], f"service {name} field {field} has no name"


# Every rule of Home Assistant's quality scale (hassfest's ALL_RULES, which is not
# installed with homeassistant): a rule left out is a rule nobody assessed.
QUALITY_SCALE_RULES = frozenset(
    [
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-conditions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "docs-triggers",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
        "async-dependency",
        "inject-websession",
        "strict-typing",
    ]
)


def test_quality_scale_assesses_every_rule() -> None:
    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text(encoding="utf-8"))
    assert set(rules["rules"]) == QUALITY_SCALE_RULES
    for rule, assessment in rules["rules"].items():
        if isinstance(assessment, str):
            assert assessment == "done", f"{rule}: only done goes without a comment"
        else:
            assert assessment["status"] in ("done", "todo", "exempt"), rule
            assert assessment["comment"], f"{rule}: {assessment['status']} needs a reason"
