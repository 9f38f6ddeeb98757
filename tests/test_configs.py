"""Every shipped config pins its seed and parses against the classes it names."""

from pathlib import Path

import pytest
import yaml

from zoo.cli import ZooCLI

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))


def test_configs_exist():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_pins_seed_and_parses(path, capsys):
    config = yaml.safe_load(path.read_text())
    assert isinstance(config.get("seed_everything"), int), f"{path} must pin seed_everything"
    with pytest.raises(SystemExit) as exit_info:
        ZooCLI(args=["fit", "-c", str(path), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].count(".") >= 1  # short names resolve to classes
