import json
from pathlib import Path

import pytest
import torch

import zoo
from callbacks import RandomStateCheckpoint
from datamodules import images
from zoo import hub
from zoo.cli import ZooCLI, main


def _runs(root: Path, experiment: str) -> list[Path]:
    return sorted(p for p in (root / "runs" / experiment).iterdir() if p.is_dir())


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def fitted_run(isolated, tiny_mask_config) -> Path:
    main(["fit", "-c", str(tiny_mask_config)])
    (run,) = _runs(isolated, "tiny_mask")
    return run


def test_fit_writes_a_complete_run_folder(fitted_run):
    assert (fitted_run / "config.yaml").is_file()
    assert (fitted_run / "checkpoints" / "last.ckpt").is_file()
    for figure in ("mask", "band_energy", "masked_images"):
        assert (fitted_run / "figures" / f"{figure}.png").stat().st_size > 1000
    (offline,) = (fitted_run / "wandb").glob("offline-run-*")
    assert list((offline / "files" / "media" / "images" / "figures").glob("mask_*.png"))
    checkpoint = torch.load(fitted_run / "checkpoints" / "last.ckpt", weights_only=True)
    classifier = checkpoint["hyper_parameters"]["classifier"]  # self-contained: no file path
    assert classifier["class_path"] == "zoo.classifiers.module.ImageClassifier"


def test_test_from_checkpoint_alone(fitted_run, capsys):
    before = _snapshot(fitted_run)
    main(["test", "--ckpt_path", str(fitted_run / "checkpoints" / "last.ckpt")])
    assert "test/masked_acc" in capsys.readouterr().out
    runs = _runs(fitted_run.parents[1].parent, "tiny_mask")
    assert len(runs) == 2 and runs[1].name.endswith("-test")
    assert (runs[1] / "figures" / "mask.png").is_file()
    assert _snapshot(fitted_run) == before


def test_two_runs_of_one_config_never_collide(fitted_run, tiny_mask_config):
    before = _snapshot(fitted_run)
    main(["fit", "-c", str(tiny_mask_config)])
    runs = _runs(fitted_run.parents[1].parent, "tiny_mask")
    assert len(runs) == 2
    assert _snapshot(fitted_run) == before
    assert (runs[1] / "checkpoints" / "last.ckpt").is_file()


def test_wandb_gets_the_nested_config(isolated, tiny_mask_config):
    cli = ZooCLI(args=["fit", "-c", str(tiny_mask_config), "--trainer.max_epochs", "1"])
    config = dict(cli.trainer.logger.experiment.config)
    assert {"model", "data", "trainer", "seed_everything"} <= set(config)
    assert config["model"]["class_path"] == "zoo.fourier.MaskedFourierClassifier"
    assert config["model"]["init_args"]["lam"] == 0.2
    assert config["data"]["init_args"]["train_subset"] == 64
    assert "classifier" not in config  # no flat duplicate of the model's arguments
    assert any(isinstance(cb, RandomStateCheckpoint) for cb in cli.trainer.callbacks)
    cli.trainer.logger.experiment.finish()


def test_a_checkpoint_whose_weights_do_not_fit_fails_clearly(fitted_run, tmp_path):
    checkpoint = torch.load(fitted_run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.zeros(3, 1, 7)  # another version's shape
    edited = tmp_path / "runs" / "edited" / "run" / "checkpoints" / "last.ckpt"
    edited.parent.mkdir(parents=True)
    torch.save(checkpoint, edited)
    with pytest.raises(SystemExit, match="weights do not fit the model") as err:
        main(["test", "--ckpt_path", str(edited)])
    assert name in str(err.value)
    (failed,) = (tmp_path / "runs" / "edited").glob("*-test/FAILED")
    assert "do not fit" in failed.read_text()


def test_hub_export_round_trip(fitted_run, isolated):
    weights = hub.export_checkpoint(fitted_run / "checkpoints" / "last.ckpt", isolated / "out")
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["class_path"] == "zoo.fourier.MaskedFourierClassifier"
    assert meta["sha256"] == hub.sha256sum(weights)
    exported = zoo.load_pretrained(str(weights))
    original = hub.load_checkpoint(fitted_run / "checkpoints" / "last.ckpt").eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(exported(x), original(x))
    with pytest.raises(FileExistsError):
        hub.export_checkpoint(fitted_run / "checkpoints" / "last.ckpt", isolated / "out")


def test_zoo_list(capsys):
    main(["list", "fourier"])
    out = capsys.readouterr().out
    assert "masked_fourier_classifier" in out and "configs/fourier/mnist_digits.yaml" in out
    main(["list"])
    assert "small_cnn_mnist.digits" in capsys.readouterr().out


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    return f"{exit_info.value.code} {captured.err}"


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model", "NoSuchModel"], "NoSuchModel"),
        (["--model.init_args.lamda", "0.1"], "lamda"),
        (["--model.init_args.image_size", "[32, 32]"], "cannot filter images"),
        (["--model.init_args.classifier", "small_cnn_mnist.digitz"], "did you mean"),
        (["--data", "FashionMNIST", "--data.init_args.root", "nowhere"], "dataset-fashion-mnist"),
    ],
    ids=["unknown_model", "unknown_key", "mask_size", "unknown_classifier", "data_missing"],
)
def test_bad_input_is_a_clear_error_and_keeps_earlier_runs(
    fitted_run, tiny_mask_config, capsys, monkeypatch, extra, expected
):
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", Path("/nonexistent/fashion"))
    before = _snapshot(fitted_run)
    message = _fails(["fit", "-c", str(tiny_mask_config), *extra], capsys)
    assert expected in message
    assert _snapshot(fitted_run) == before


def test_ckpt_path_pointing_nowhere(capsys):
    message = _fails(["test", "--ckpt_path", "runs/x/y/checkpoints/last.ckpt"], capsys)
    assert "does not exist" in message


def test_corrupt_checkpoint_for_test(isolated, capsys):
    bad = isolated / "bad.ckpt"
    bad.write_bytes(b"\x00" * 64)
    assert "not a readable checkpoint" in _fails(["test", "--ckpt_path", str(bad)], capsys)


def test_wandb_is_offline_without_a_key(monkeypatch, tmp_path):
    from zoo.cli import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode() == "offline"


def test_launch_token_is_shared_by_ranks_and_new_per_launch(monkeypatch):
    from zoo.cli import _launch_token

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert _launch_token() is None  # one task: every run gets its own random folder
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    assert _launch_token() == "slurm42.3"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert _launch_token().startswith("torchrun")


def test_failed_run_is_marked(fitted_run, tiny_mask_config, capsys):
    _fails(["fit", "-c", str(tiny_mask_config), "--model.init_args.image_size", "[32, 32]"], capsys)
    runs = _runs(fitted_run.parents[1].parent, "tiny_mask")
    failed = [r for r in runs if (r / "FAILED").is_file()]
    assert len(failed) == 1 and "cannot filter" in (failed[0] / "FAILED").read_text()
    assert not (fitted_run / "FAILED").exists()


def test_unreadable_checkpoint_with_a_config(tiny_mask_config, isolated, capsys):
    bad = isolated / "bad.ckpt"
    bad.write_bytes(b"\x00" * 64)
    message = _fails(["fit", "-c", str(tiny_mask_config), "--ckpt_path", str(bad)], capsys)
    assert "not a readable checkpoint" in message


def test_predict_saves_predictions(fitted_run):
    main(["predict", "--ckpt_path", str(fitted_run / "checkpoints" / "last.ckpt")])
    (run,) = [
        r for r in _runs(fitted_run.parents[1].parent, "tiny_mask") if r.name.endswith("-predict")
    ]
    probabilities = torch.load(run / "predictions.pt", weights_only=True)
    assert probabilities.shape == (500, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(500), atol=1e-5)


def test_a_constructor_error_reaches_the_user_without_the_parser_dump():
    from zoo.cli import _plain_message

    wrapped = (
        "Does not validate against any of the Union subtypes\n"
        "Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]\n"
        "Errors:\n"
        "  - num_experts must be a positive integer, got 0\n"
        "  - Expected a <class 'NoneType'>\n"
        "Given value type: <class 'jsonargparse._namespace.Namespace'>\n"
        "Given value: Namespace(class_path='zoo.flux.FLUXModule', init_args=Namespace(dim=10))"
    )
    assert _plain_message(wrapped) == "FLUXModule: num_experts must be a positive integer, got 0"
    assert _plain_message("unknown model 'x'") == "unknown model 'x'"
