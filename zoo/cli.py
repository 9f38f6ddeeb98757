"""The ``zoo`` command: LightningCLI subcommands plus ``zoo list``, ``zoo hub`` and ``zoo study``.

``zoo fit|validate|test|predict`` are LightningCLI in subclass mode: a config names its
model and data module by class (short names work). Every run gets its own folder,
``<root>/<experiment>/<timestamp>-<id>[-<subcommand>]``, holding ``config.yaml``,
``checkpoints/``, ``figures/`` and the W&B files.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

import callbacks  # noqa: F401  (short class names in configs)
import datamodules  # noqa: F401
import zoo  # noqa: F401
from callbacks.random_state import RandomStateCheckpoint
from zoo import hub
from zoo.hub import PROJECT_ROOT

log = logging.getLogger(__name__)

CONFIG_ROOT = PROJECT_ROOT / "configs"
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
_CREATED_RUN_DIRS: list[Path] = []
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, ConnectionError)


def wandb_mode() -> str:
    """``online`` when the user asks (``WANDB_MODE``) or has a key configured, else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path("~/.netrc").expanduser()
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def _launch_token() -> str | None:
    """An id that every process of one multi-process launch shares, and no other launch has."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun: the ranks are children of one agent
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        return f"torchrun{os.getppid()}" + ("" if run_id == "none" else f"-{run_id}")
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        step = os.environ.get("SLURM_STEP_ID", "0")
        return f"slurm{os.environ['SLURM_JOB_ID']}.{step}"
    return None


def make_run_dir(root: str | Path, experiment: str, subcommand: str) -> Path:
    """Create a new, unique run folder; never reuses an existing one.

    The processes of one ``torchrun`` launch, one multi-task SLURM step, or one run that
    Lightning's DDP launcher splits into processes share a folder.
    """
    inherited = os.environ.get("ZOO_RUN_DIR")
    if inherited and os.environ.get("LOCAL_RANK") and Path(inherited).is_dir():
        return Path(inherited)  # a process that Lightning's DDP launcher started for this run
    suffix = "" if subcommand == "fit" else f"-{subcommand}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    token = _launch_token()
    if token:
        path = Path(root) / experiment / f"{stamp[:8]}-{token}{suffix}"
        path.mkdir(parents=True, exist_ok=True)
        return path
    for _ in range(100):
        path = Path(root) / experiment / f"{stamp}-{secrets.token_hex(3)}{suffix}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            _CREATED_RUN_DIRS.append(path)
            os.environ["ZOO_RUN_DIR"] = str(path.resolve())  # inherited by DDP workers
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {Path(root) / experiment}")


class ZooSaveConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder and gives W&B the nested config."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if logger is None:
            return
        nested = self.parser.dump(self.config, skip_none=False, format="json")
        config = {k: v for k, v in json.loads(nested).items() if k != "config"}
        logger.experiment.config.update(config, allow_val_change=True)


class ZooCLI(LightningCLI):
    """LightningCLI with one folder per run, W&B by default and checkpoints in the run folder.

    Args:
        run_dir: Use this folder for the run instead of a new one (a study's members
            resume in their own folders); its ``config.yaml`` is overwritten.
        *args, **kwargs: Passed to ``LightningCLI``.
    """

    def __init__(self, *args: Any, run_dir: str | Path | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", ZooSaveConfig)
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        if run_dir is not None:
            kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._fixed_run_dir = None if run_dir is None else Path(run_dir)
        self.run_dir: Path | None = None
        super().__init__(L.LightningModule, L.LightningDataModule, *args, **kwargs)

    def _experiment_name(self, config: Any) -> str:
        files = config.get("config") or []
        if files:
            return Path(str(files[-1])).stem
        ckpt = config.get("ckpt_path")
        if ckpt and Path(ckpt).parent.name == "checkpoints":
            return Path(ckpt).resolve().parents[2].name
        model = config.get("model")
        class_path = getattr(model, "class_path", None) or "run"
        return class_path.rsplit(".", 1)[-1].lower()

    def _run_root(self, config: Any) -> Path:
        root = config.trainer.get("default_root_dir")
        if root:
            return Path(root)
        ckpt = config.get("ckpt_path")
        if ckpt and Path(ckpt).parent.name == "checkpoints":
            return Path(ckpt).resolve().parents[3]
        return Path("runs")

    def before_instantiate_classes(self) -> None:
        if self._fixed_run_dir is not None:
            self._fixed_run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir = self._fixed_run_dir
            log.info("run folder: %s", self.run_dir)
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        experiment = self._experiment_name(config)
        self.run_dir = make_run_dir(self._run_root(config), experiment, self.subcommand)
        log.info("run folder: %s", self.run_dir)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        run_dir = str(self.run_dir)
        configured = self._get(self.config_init, "trainer", default={}).get("logger")
        if configured is None or configured is True:
            kwargs["logger"] = WandbLogger(
                save_dir=run_dir,
                project=os.environ.get("WANDB_PROJECT", "zoo"),
                name=f"{Path(run_dir).parent.name}/{Path(run_dir).name}",
                mode=wandb_mode(),
                log_model=False,
            )
        kwargs["default_root_dir"] = run_dir
        trainer = super().instantiate_trainer(**kwargs)
        checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
        for cb in checkpoints:
            if cb.dirpath is None:
                cb.dirpath = os.path.join(run_dir, "checkpoints")
        if checkpoints and not any(cb.save_last for cb in checkpoints):
            checkpoints[0].save_last = True
        if not any(isinstance(cb, RandomStateCheckpoint) for cb in trainer.callbacks):
            trainer.callbacks.append(RandomStateCheckpoint())
        return trainer

    def after_fit(self) -> None:
        self._summarise("fit")

    def after_test(self) -> None:
        self._summarise("test")

    def after_validate(self) -> None:
        self._summarise("validate")

    def after_predict(self) -> None:
        """Save what ``zoo predict`` computed as ``predictions.pt`` in the run folder."""
        import torch

        predictions = self.trainer.predict_loop.predictions
        if not predictions or not self.trainer.is_global_zero:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions
        path = Path(self.run_dir) / "predictions.pt"
        if all(isinstance(b, torch.Tensor) for b in batches):
            torch.save(torch.cat(batches), path)
        else:
            torch.save(batches, path)
        print(f"predictions: {path}")

    def _summarise(self, stage: str) -> None:
        if not self.trainer.is_global_zero:
            return
        metrics = {
            k: float(v) for k, v in sorted(self.trainer.callback_metrics.items()) if v.numel() == 1
        }
        lines = [f"\n{stage} finished; run folder: {self.run_dir}"]
        lines += [f"  {k:<28} {v:.4f}" for k, v in metrics.items() if not k.endswith("_step")]
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "")
        if last:
            lines.append(f"  checkpoint: {last}")
            lines.append(f"  evaluate:   zoo test --ckpt_path {last}")
        figures = Path(self.run_dir) / "figures"
        if figures.is_dir():
            lines.append(f"  figures:    {figures}/*.png")
        print("\n".join(lines))


def cli_from_python(args: list[str] | dict[str, Any], **kwargs: Any) -> ZooCLI:
    """A ``ZooCLI`` built from ``args`` alone, whatever the command line of this process says."""
    argv = sys.argv[1:]
    sys.argv[1:] = []
    try:
        return ZooCLI(args=args, **kwargs)
    finally:
        sys.argv[1:] = argv


def _checkpoint_arguments(argv: list[str]) -> list[str]:
    """Check ``--ckpt_path``; alone with test/validate/predict, add the model and data it holds."""
    if not argv:
        return argv
    ckpt = None
    for i, arg in enumerate(argv[1:], start=1):
        if arg.split("=", 1)[0] == "--ckpt_path":
            ckpt = (
                arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            )
    if ckpt is None or ckpt in ("last", "best", "hpc", "registry"):
        return argv
    checkpoint = hub.read_checkpoint(ckpt)  # a clear error for missing or unreadable files
    flags = {a.split("=", 1)[0] for a in argv[1:]}
    if argv[0] not in LIGHTNING_SUBCOMMANDS[1:] or flags & {"-c", "--config", "--model", "--data"}:
        return argv
    extra = []
    for key, flag in (("hyper_parameters", "--model"), ("datamodule_hyper_parameters", "--data")):
        hparams = checkpoint.get(key)
        if not hparams:
            if flag == "--model":
                raise ValueError(f"{ckpt} holds no model hyper-parameters; pass --model")
            continue
        spec = {
            "class_path": hub.checkpoint_class_path(checkpoint, key),
            "init_args": hub.plain_init_args(hparams),
        }
        extra += [flag, json.dumps(spec)]
    return argv[:1] + extra + argv[1:]


def _finish_wandb() -> None:
    """End this process's W&B run, so that the next command starts its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def list_command(pattern: str = "*") -> None:
    """Print models, data modules, configs and pretrained entries matching a pattern."""
    import inspect

    import zoo.studies  # noqa: F401  (registers the studies)
    from zoo.registry import BACKBONES, STUDIES

    glob = (pattern if any(c in pattern for c in "*?[") else f"*{pattern}*").lower()
    datamodule_names = [
        name
        for name, obj in inspect.getmembers(datamodules, inspect.isclass)
        if issubclass(obj, L.LightningDataModule) and not vars(obj).get("abstract", False)
    ]
    configs = (
        sorted(str(p.relative_to(PROJECT_ROOT)) for p in CONFIG_ROOT.rglob("*.yaml"))
        if CONFIG_ROOT.is_dir()
        else []
    )
    pretrained = [f"{n}  ({hub.get_entry(n).description})" for n in hub.list_pretrained()]
    sections = {
        "models": zoo.list_models(),
        "backbones": BACKBONES.list(),
        "studies": STUDIES.list(),
        "data modules": datamodule_names,
        "configs": configs,
        "pretrained": pretrained,
    }
    sections = {
        title: [n for n in names if fnmatch.fnmatch(n.lower(), glob)]
        for title, names in sections.items()
    }
    if not any(sections.values()):
        print(f"nothing matches {pattern!r}; `zoo list` shows everything")
        return
    for title, names in sections.items():
        print(f"{title}:")
        for name in names or ["(none)"]:
            print(f"  {name}")


def hub_build(name: str, out: str | None = None) -> Path:
    """Re-train a pretrained entry from its config, test it and export its weights."""
    entry = hub.get_entry(name)
    config = PROJECT_ROOT / entry.config
    if not config.is_file():
        raise FileNotFoundError(f"config {config} of entry {name!r} does not exist")
    cli = cli_from_python(["fit", "-c", str(config)], run=True)
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = {k: round(float(v), 6) for k, v in results[0].items()}
    out_dir = Path(out) if out else hub.zoo_home() / "hub"
    weights = hub.export_checkpoint(ckpt, out_dir, stem=Path(entry.file).stem, metrics=metrics)
    print(f"{name}: {weights}\n  sha256 {hub.sha256sum(weights)}\n  metrics {metrics}")
    return weights


def _hub_main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="zoo hub", description="Pretrained weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="re-train an entry from its config and export it")
    build.add_argument("name")
    build.add_argument("--out", help="folder for the weights (default $ZOO_HOME/hub)")
    export = sub.add_parser("export", help="write a checkpoint as .safetensors + .json")
    export.add_argument("ckpt")
    export.add_argument("--out", default=".", help="output folder (default: here)")
    export.add_argument("--name", help="file stem (default: the checkpoint's)")
    args = parser.parse_args(argv)
    if args.command == "build":
        hub_build(args.name, args.out)
    else:
        weights = hub.export_checkpoint(args.ckpt, args.out, stem=args.name)
        print(f"{weights}\n{weights.with_suffix('.json')}")


def _study_main(argv: list[str]) -> None:
    import argparse

    from zoo.studies import load_study
    from zoo.studies.base import markdown_table

    parser = argparse.ArgumentParser(
        prog="zoo study",
        description="Train the runs of a study, resuming finished ones, and tabulate them.",
    )
    parser.add_argument(
        "-c", "--config", required=True, help="study YAML, e.g. configs/robustness/"
    )
    parser.add_argument("--out", help="study folder (default runs/<config name>)")
    parser.add_argument("--only", help="comma-separated stages to run now (default: all)")
    args = parser.parse_args(argv)
    study = load_study(args.config, args.out)
    only = [name.strip() for name in args.only.split(",")] if args.only else None
    rows = study.run(only)
    print(f"\n{markdown_table(rows)}\n\nstudy folder: {study.folder}")
    print(f"  table:   {study.folder / 'results.csv'} and results.md")
    print(f"  figures: {study.folder / 'figures'}/*.png")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zoo`` console script."""
    from_shell = argv is None
    _CREATED_RUN_DIRS.clear()  # the folders of this command only
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "zoo list [PATTERN]        models, backbones, data modules, configs, pretrained\n"
            "zoo hub build|export ...  re-train a pretrained entry, export a checkpoint\n"
            "zoo study -c CONFIG       train and tabulate a study (configs/robustness/)\n"
            "zoo fit|validate|test|predict ...  LightningCLI subcommands (below)\n"
        )
    try:
        if argv and argv[0] == "list":
            list_command(argv[1] if len(argv) > 1 else "*")
            return
        if argv and argv[0] == "hub":
            _hub_main(argv[1:])
            return
        if argv and argv[0] == "study":
            _study_main(argv[1:])
            return
        argv = _checkpoint_arguments(argv)
        if from_shell:
            sys.argv[1:] = argv
        ZooCLI(args=None if from_shell else argv)
    except USER_ERRORS as err:
        message = _plain_message(str(err))
        _mark_failed(f"{type(err).__name__}: {message}")
        if os.environ.get("ZOO_DEBUG"):
            raise
        sys.exit(f"zoo: error: {message}\n(set ZOO_DEBUG=1 for the traceback)")
    except RuntimeError as err:
        if not str(err).startswith("Error(s) in loading state_dict"):
            _mark_failed(f"{type(err).__name__}: {err}")
            raise
        detail = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
        message = (
            "the checkpoint's weights do not fit the model its hyper-parameters build (it was "
            f"saved by another version of the model, or edited): {detail.strip()}"
        )
        _mark_failed(message)
        if os.environ.get("ZOO_DEBUG"):
            raise
        sys.exit(f"zoo: error: {message}\n(set ZOO_DEBUG=1 for the traceback)")
    except KeyboardInterrupt:
        _mark_failed("interrupted")
        raise
    except Exception as err:  # unexpected: keep the traceback, but say the run failed
        _mark_failed(f"{type(err).__name__}: {err}")
        raise
    finally:
        _finish_wandb()
        for run_dir in _CREATED_RUN_DIRS:  # a run that failed before writing anything
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()


_UNION_ERROR = "Does not validate against any of the Union subtypes"


def _plain_message(message: str) -> str:
    """The reason inside a jsonargparse Union error, without the parsed namespace dump.

    A model or data module that rejects its arguments in ``__init__`` reaches the user
    wrapped as "Does not validate against any of the Union subtypes ... Errors: - <reason>
    - Expected a <class 'NoneType'> ... Given value: Namespace(...)"; only the reason says
    what was wrong. Other messages pass through unchanged.
    """
    if _UNION_ERROR not in message:
        return message
    reasons = [
        line.strip()[2:]
        for line in message.splitlines()
        if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line
    ]
    if not reasons:
        return message
    named = re.search(r"class_path='([\w.]+)'", message)
    where = f"{named.group(1).rsplit('.', 1)[-1]}: " if named else ""
    return where + "; ".join(reasons)


def _mark_failed(reason: str) -> None:
    """Leave a FAILED file in the folders of runs that did not finish."""
    for run_dir in _CREATED_RUN_DIRS:
        if run_dir.is_dir() and any(run_dir.iterdir()):
            (run_dir / "FAILED").write_text(reason + "\n")


if __name__ == "__main__":
    main()
