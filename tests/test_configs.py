"""Every shipped config pins its seed and parses against the classes it names."""

from pathlib import Path

import pytest
import yaml

from zoo.cli import ZooCLI
from zoo.studies import load_study

ALL_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))
STUDIES = [p for p in ALL_CONFIGS if "study" in yaml.safe_load(p.read_text())]
CONFIGS = [p for p in ALL_CONFIGS if p not in STUDIES]


def test_configs_exist():
    assert CONFIGS and STUDIES


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_study_config_pins_seed_and_every_run_parses(path, tmp_path, capsys):
    config = yaml.safe_load(path.read_text())
    assert isinstance(config.get("seed_everything"), int), f"{path} must pin seed_everything"
    study = load_study(path, tmp_path / "study")
    stages = study.stages()
    assert len({stage.name for stage in stages}) == len(stages)
    for stage in stages:
        stage_file = tmp_path / "stage.yaml"
        stage_file.write_text(yaml.safe_dump(stage.config))
        with pytest.raises(SystemExit) as exit_info:
            ZooCLI(args=["fit", "-c", str(stage_file), "--print_config"])
        assert exit_info.value.code == 0, stage.name
        capsys.readouterr()
    assert not (tmp_path / "study").exists()  # checking a study trains nothing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_pins_seed_and_parses(path, capsys):
    config = yaml.safe_load(path.read_text())
    assert isinstance(config.get("seed_everything"), int), f"{path} must pin seed_everything"
    with pytest.raises(SystemExit) as exit_info:
        ZooCLI(args=["fit", "-c", str(path), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].count(".") >= 1  # short names resolve to classes
