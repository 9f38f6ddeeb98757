"""Studies: one command trains every run, resumes what stopped, and tabulates the results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import zoo.cli
from zoo.cli import main
from zoo.spectral import radial_centroid
from zoo.studies import load_study, run_stage
from zoo.studies.base import Stage, markdown_table, write_table
from zoo.studies.robustness import white_noise_fraction

TRAINER = {
    "max_epochs": 1,
    "accelerator": "cpu",
    "limit_val_batches": 1,
    "limit_test_batches": 2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
DATA = {"class_path": "MNISTDigits", "init_args": {"batch_size": 32, "train_subset": 96}}


def bias_config(architectures: dict | None = None) -> dict:
    return {
        "study": "frequency_bias",
        "seed_everything": 0,
        "classifier": {
            "model": {"class_path": "ImageClassifier", "init_args": {"lr": 0.003}},
            "data": DATA,
            "trainer": TRAINER,
        },
        "architectures": architectures
        or {
            "mlp": {"backbone": "mlp", "hidden_dim": 16},
            "conv3": {"backbone": "local_conv", "hidden_dim": 2, "activation": "linear"},
        },
        "attack": {"eps": [0.0, 0.05], "steps": 3, "max_batches": 1},
    }


def write(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class CountingCLI(zoo.cli.ZooCLI):
    """The zoo CLI, counting how many runs were built."""

    built = 0

    def __init__(self, *args, **kwargs):
        type(self).built += 1
        super().__init__(*args, **kwargs)


@pytest.fixture
def counting(monkeypatch):
    CountingCLI.built = 0
    monkeypatch.setattr(zoo.cli, "ZooCLI", CountingCLI)
    return CountingCLI


def test_frequency_bias_study_writes_table_and_figures_and_resumes(tmp_path, counting, capsys):
    config = write(bias_config(), tmp_path / "bias.yaml")
    main(["study", "-c", str(config), "--out", str(tmp_path / "bias")])
    assert counting.built == 2
    folder = tmp_path / "bias"
    with open(folder / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["architecture"] for row in rows] == ["mlp", "conv3"]
    assert rows[1]["kernel_size"] == "3" and rows[1]["activation"] == "linear"
    for row in rows:
        assert 0 <= float(row["perturbation_hf"]) <= 1
        assert 0 <= float(row["saliency_hf"]) <= 1
        assert 0 < float(row["perturbation_l2"]) <= 0.05 * 28  # inside the L-inf ball
    assert "| mlp |" in (folder / "results.md").read_text()
    for name in ("hf_fraction", "radial_profiles", "perturbation_spectra", "robust_accuracy"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 0
    assert list((folder / "wandb").glob("offline-run-*"))
    state = json.loads((folder / "mlp" / "stage.json").read_text())
    assert state["status"] == "done" and state["results"]["attacked_images"] == 32
    assert "study folder" in capsys.readouterr().out

    main(["study", "-c", str(config), "--out", str(folder)])
    assert counting.built == 2  # nothing was trained again
    assert (folder / "results.csv").read_text().count("\n") == 3


def test_interrupted_study_keeps_finished_runs_and_resumes(tmp_path, counting):
    architectures = {
        "mlp": {"backbone": "mlp", "hidden_dim": 8},
        "conv": {"backbone": "local_conv", "hidden_dim": 2, "kernel_size": 4},  # even: fails
    }
    config = write(bias_config(architectures), tmp_path / "bias.yaml")
    with pytest.raises(SystemExit, match="kernel_size must be a positive odd integer"):
        main(["study", "-c", str(config), "--out", str(tmp_path / "bias")])
    finished = tmp_path / "bias" / "mlp" / "checkpoints" / "last.ckpt"
    stamp = finished.stat().st_mtime_ns
    assert counting.built == 2

    architectures["conv"]["kernel_size"] = 3
    write(bias_config(architectures), config)
    main(["study", "-c", str(config), "--out", str(tmp_path / "bias")])
    assert counting.built == 3  # only the failed run
    assert finished.stat().st_mtime_ns == stamp
    assert (tmp_path / "bias" / "results.csv").read_text().count("\n") == 3


class StopAfterFirstEpoch(L.Callback):
    """Interrupts a fit like Ctrl-C once one epoch is done, while ``armed``."""

    armed = True

    def on_train_epoch_start(self, trainer, pl_module):
        if self.armed and trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, caplog):
    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "ImageClassifier",
            "init_args": {"backbone": {"class_path": "zoo.nn.MLP", "init_args": {"hidden_dim": 8}}},
        },
        "data": DATA,
        "trainer": {
            **TRAINER,
            "max_epochs": 2,
            "callbacks": [{"class_path": f"{__name__}.StopAfterFirstEpoch"}],
        },
    }
    stage = Stage("run", config)
    StopAfterFirstEpoch.armed = True
    with pytest.raises(SystemExit):  # Lightning ends the process after a Ctrl-C
        run_stage(tmp_path / "run", stage)
    state = json.loads((tmp_path / "run" / "stage.json").read_text())
    assert state["status"] == "started"
    steps_per_epoch = 96 // 32
    first = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == steps_per_epoch

    StopAfterFirstEpoch.armed = False
    with caplog.at_level("INFO", logger="zoo.studies.base"):
        results = run_stage(tmp_path / "run", stage)
    assert "resuming from" in caplog.text
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * steps_per_epoch
    assert 0 <= results["test"]["test/acc"] <= 1


def test_a_finished_run_with_another_config_is_never_overwritten(tmp_path):
    config = write(bias_config({"mlp": {"backbone": "mlp", "hidden_dim": 8}}), tmp_path / "a.yaml")
    main(["study", "-c", str(config), "--out", str(tmp_path / "bias")])
    write(bias_config({"mlp": {"backbone": "mlp", "hidden_dim": 9}}), config)
    with pytest.raises(SystemExit, match="made with another config"):
        main(["study", "-c", str(config), "--out", str(tmp_path / "bias")])
    assert json.loads((tmp_path / "bias" / "mlp" / "stage.json").read_text())["status"] == "done"


@pytest.mark.parametrize(
    ("architectures", "message"),
    [
        ({"x": {"backbone": "lokal_conv"}}, "architecture 'x': unknown backbone 'lokal_conv'"),
        ({"x": {"backbone": "local_conv", "kernel_sise": 3}}, "has no argument 'kernel_sise'"),
        ({"x": {"hidden_dim": 3}}, "names no backbone"),
        ({"x": {"backbone": "zoo.nn.Nope"}}, "has no attribute 'Nope'"),
    ],
)
def test_bad_architectures_fail_before_anything_is_trained(tmp_path, architectures, message):
    config = write(bias_config(architectures), tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match=message):
        load_study(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_study_configs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="does not name a study"):
        load_study(write({"model": {}}, tmp_path / "fit.yaml"))
    with pytest.raises(ValueError, match="did you mean 'frequency_bias'"):
        load_study(write({**bias_config(), "study": "frequency_bais"}, tmp_path / "typo.yaml"))
    with pytest.raises(ValueError, match="has no argument 'archs'"):
        load_study(write({**bias_config(), "archs": {}}, tmp_path / "key.yaml"))
    with pytest.raises(ValueError, match="eps must be"):
        load_study(write({**bias_config(), "attack": {"eps": [-1.0]}}, tmp_path / "eps.yaml"))
    study = load_study(write(bias_config(), tmp_path / "ok.yaml"), tmp_path / "out")
    with pytest.raises(ValueError, match="unknown stage"):
        study.run(only=["nope"])


def mask_kinds_config() -> dict:
    return {
        "study": "fourier_mask_kinds",
        "seed_everything": 0,
        "reference": "standard",
        "classifier": {
            "model": {
                "class_path": "ImageClassifier",
                "init_args": {
                    "backbone": {
                        "class_path": "zoo.nn.SmallCNN",
                        "init_args": {"hidden_dim": 4, "num_layers": 1},
                    }
                },
            },
            "data": DATA,
            "trainer": TRAINER,
        },
        "kinds": {"standard": {}, "rotation": {"augment_degrees": 180}},
        "attack": {"eps": [0.0, 0.05], "steps": 2, "max_batches": 1},
        "mask": {
            "model": {
                "class_path": "MaskedFourierClassifier",
                "init_args": {"lr": 0.05, "num_bands": 6},
            },
            "data": DATA,
            "trainer": TRAINER,
        },
    }


def test_fourier_mask_kinds_study(tmp_path):
    config = write(mask_kinds_config(), tmp_path / "kinds.yaml")
    main(["study", "-c", str(config), "--out", str(tmp_path / "kinds")])
    folder = tmp_path / "kinds"
    with open(folder / "results.csv") as handle:
        rows = {row["kind"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"standard", "rotation"}
    assert float(rows["standard"]["d_radial_low"]) == 0.0
    assert float(rows["standard"]["d_angular_max_abs"]) == 0.0
    assert 0 < float(rows["rotation"]["mask_l1"]) <= 1
    assert "robust_acc@0.05" in rows["rotation"]
    with open(folder / "band_energies.csv") as handle:
        bands = list(csv.DictReader(handle))
    assert len(bands) == 2 * 2 * 6
    reference = {
        (b["bands"], b["band"]): float(b["energy"]) for b in bands if b["kind"] == "standard"
    }
    for band in bands:  # each difference is the kind's energy minus the standard mask's
        expected = float(band["energy"]) - reference[(band["bands"], band["band"])]
        assert float(band["difference"]) == pytest.approx(expected, abs=1e-5)
    for name in ("masks", "band_energy_differences"):
        assert (folder / "figures" / f"{name}.png").is_file()
    mask = torch.load(folder / "rotation" / "mask" / "checkpoints" / "last.ckpt", weights_only=True)
    classifier = mask["hyper_parameters"]["classifier"]
    assert classifier["init_args"]["augment_degrees"] == 180  # fitted on the rotation classifier


def test_mask_kinds_bad_input(tmp_path):
    config = mask_kinds_config()
    with pytest.raises(ValueError, match="reference 'plain' is not one of the kinds"):
        load_study(write({**config, "reference": "plain"}, tmp_path / "a.yaml"))
    config["kinds"]["shear"] = {"augment_shear": 10}
    with pytest.raises(ValueError, match="kind 'shear': ImageClassifier has no argument"):
        load_study(write(config, tmp_path / "b.yaml"))


def test_tables_and_summary_numbers(tmp_path):
    rows = [{"a": 1, "b": 0.123456}, {"a": 2, "c": None}]
    write_table(rows, tmp_path / "t")
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "a,b,c"
    assert markdown_table(rows).splitlines() == [
        "| a | b | c |",
        "| --- | --- | --- |",
        "| 1 | 0.1235 |  |",
        "| 2 |  |  |",
    ]
    # white noise spreads its energy evenly over the bins: 1 - pi r^2 / 4 of it lies above r
    # (the square [-1, 1)^2 has area 4), up to the discreteness of a 64 x 64 grid
    assert white_noise_fraction(64, 64, 0.5) == pytest.approx(1 - torch.pi * 0.25 / 4, abs=0.01)
    # all the energy in one ring puts the centroid at that ring's centre
    energies = torch.zeros(8)
    energies[2] = 1.0
    assert float(radial_centroid(energies)) == pytest.approx(2.5 / 8 * 2**0.5)


def test_model_comparison_study_scores_each_model_on_the_same_data(tmp_path):
    tiny = {"state_dim": 2, "hidden_dim": 8, "num_heads": 2, "num_layers": 1, "ff_dim": 8}
    config = {
        "study": "model_comparison",
        "seed_everything": 0,
        "base": {
            "data": {
                "class_path": "LotkaVolterra",
                "init_args": {
                    "num_trajectories": 20,
                    "num_snapshots": 40,
                    "time_stride": 4,
                    "num_times": 6,
                    "batch_size": 8,
                },
            },
            "trainer": {**TRAINER, "limit_val_batches": None, "limit_test_batches": None},
        },
        "models": {
            "anie": {
                "class_path": "ANIE",
                "init_args": {
                    "integral": {"class_path": "zoo.integral.AttentionIntegral", "init_args": tiny},
                    "context": 2,
                },
            },
            "node": {
                "class_path": "NeuralODE",
                "init_args": {"state_dim": 2, "hidden_dim": 8, "method": "rk4", "context": 2},
            },
        },
        "evaluations": {
            "interpolation": {"data": {"time_stride": 2, "num_times": 11}, "context": 3},
            "bad": {"data": {"num_times": 1000}},
        },
    }
    path = write(config, tmp_path / "compare.yaml")
    main(["study", "-c", str(path), "--out", str(tmp_path / "compare")])
    with open(tmp_path / "compare" / "results.csv") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"anie", "node"}
    for row in rows.values():
        assert float(row["mse"]) > 0 and float(row["mse_hold_last"]) > 0
        assert float(row["interpolation_mse"]) > 0
        assert row["bad_mse"] == ""  # more stamps than the data have: scored as missing
    # every model is scored against the same hold-last baseline on the same test frames
    assert rows["anie"]["mse_hold_last"] == rows["node"]["mse_hold_last"]
    assert (tmp_path / "compare" / "figures" / "test_mse.png").is_file()

    with pytest.raises(ValueError, match="evaluation 'x' has unknown keys"):
        load_study(write({**config, "evaluations": {"x": {"dat": {}}}}, tmp_path / "e.yaml"))
    with pytest.raises(ValueError, match="model 'anie': .* has no argument 'contxt'"):
        models = {"anie": {"class_path": "ANIE", "init_args": {"contxt": 2}}}
        load_study(write({**config, "models": models}, tmp_path / "m.yaml"))
    with pytest.raises(ValueError, match="model 'anie': unknown class 'ANI'"):
        models = {"anie": {"class_path": "ANI", "init_args": {}}}
        load_study(write({**config, "models": models}, tmp_path / "c.yaml"))
    with pytest.raises(ValueError, match=r"metrics \['w_1'\] are not logged .* 'mse_hold_last'"):
        load_study(write({**config, "metrics": ["mse", "w_1"]}, tmp_path / "t.yaml"))
    with pytest.raises(ValueError, match="baseline_metric 'w1_source' is not one of metrics"):
        load_study(write({**config, "baseline_metric": "w1_source"}, tmp_path / "b.yaml"))


def test_evaluate_on_a_finer_grid_with_more_context():
    from zoo.integral import NeuralODE

    model = NeuralODE(state_dim=1, hidden_dim=4, method="rk4", context=2)
    t = torch.linspace(0, 1, 9).expand(3, 9)
    y = torch.sin(3 * t).unsqueeze(-1)
    coarse = model.evaluate([(y[:, ::2], t[:, ::2])])
    fine = model.evaluate([(y, t)], context=3)
    assert model.context == 2  # restored
    assert coarse.keys() == fine.keys() >= {"mse", "mse_hold_last", "rel_l2"}
    held = y[:, 3:] - y[:, 2:3]  # hold-last error on the fine grid, 3 frames given
    assert fine["mse_hold_last"] == pytest.approx(float(held.square().mean()), rel=1e-5)
