"""The README promises: two set-up commands, CI runs the second verbatim, and a configuration
reference that names every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from creditflow.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _settings_fields(model: type[BaseModel] = Settings, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_settings_fields(ann, f"{prefix}{name}."))
        else:
            out[prefix + name] = field.default
    return out


def _config_table() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", section, flags=re.M)
    return {key: default.strip() for key, default in rows}


def test_the_first_code_block_is_the_two_commands_and_ci_runs_the_second():
    block = re.search(r"```\n(.*?)```", README, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == commands[1]


def test_the_configuration_reference_names_every_setting_with_its_default():
    table = _config_table()
    fields = _settings_fields()
    assert sorted(table) == sorted(fields)
    for key, default in fields.items():
        shown = table[key]
        if default is None:
            assert shown == "(none)", key
        else:
            text = str(default).lower() if isinstance(default, bool) else str(default)
            assert shown == f"`{text}`", (key, shown, default)
