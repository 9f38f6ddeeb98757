"""Studies: many runs trained from one config, resumed where they stopped, summarised together.

A study config names a registered study (``zoo list`` shows them) and its arguments::

    study: frequency_bias
    seed_everything: 0
    classifier: {model: ..., data: ..., trainer: ...}
    ...

``zoo study -c CONFIG`` trains each run the study needs (a *stage*: one ``zoo fit``
config, then ``test``) in its own folder under ``runs/<config name>/`` or ``--out``. A
stage that finished is read back instead of trained again; one that was interrupted
resumes from its last checkpoint. The study then writes ``results.csv``, ``results.md``
and ``figures/`` into its folder and logs them to a W&B run of its own.
"""

from __future__ import annotations

import copy
import csv
import importlib
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.registry import STUDIES

log = logging.getLogger(__name__)

STATE_FILE = "stage.json"
_SHORT_NAME_MODULES = (
    "zoo.nn",
    "zoo.classifiers",
    "zoo.fourier",
    "zoo.integral",
    "zoo.flux",
    "datamodules",
    "callbacks",
)


@dataclass
class Stage:
    """One run of a study.

    Args:
        name: Folder of the run, relative to the study folder (``a/b`` nests).
        config: The ``zoo fit`` config: ``seed_everything``, ``model``, ``data``, ``trainer``.
        identity: What decides whether a finished run in the folder is this stage (default:
            ``config``); differs from it where the config holds paths inside the study.
    """

    name: str
    config: dict[str, Any]
    identity: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def resolve_class(name: str) -> type:
    """A class from its full path, or a short name exported by zoo, datamodules or callbacks."""
    from zoo.nn.config import import_class

    if "." in name:
        return import_class(name)
    for module_name in _SHORT_NAME_MODULES:
        module = importlib.import_module(module_name)
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    raise ValueError(
        f"unknown class {name!r}: give its full path (package.module.Class) or a name "
        f"exported by one of {', '.join(_SHORT_NAME_MODULES)}"
    )


def check_arguments(cls: type, arguments: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` if ``arguments`` has a key that ``cls`` does not accept."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise ValueError(
            f"{where}: {cls.__name__} has no argument {', '.join(map(repr, unknown))}; it "
            f"accepts {', '.join(name for name in parameters if name not in ('args', 'kwargs'))}"
        )


def fit_config(config: Any, where: str) -> dict[str, Any]:
    """Check that ``config`` is a ``zoo fit`` config with a model class; return a copy."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{where} must be a zoo fit config with model, data and trainer keys")
    if "class_path" not in config["model"]:
        raise ValueError(f"{where}.model needs a class_path")
    config = copy.deepcopy(config)
    config["model"].setdefault("init_args", {})
    config.setdefault("trainer", {})
    return config


def add_callback(config: dict[str, Any], class_path: str, init_args: dict[str, Any]) -> None:
    """Append a callback to a fit config's ``trainer.callbacks``."""
    callbacks = config["trainer"].get("callbacks") or []
    if isinstance(callbacks, dict):
        callbacks = [callbacks]
    config["trainer"]["callbacks"] = [
        *callbacks,
        {"class_path": class_path, "init_args": init_args},
    ]


def read_state(folder: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The saved state of the stage in ``folder``, or ``{}`` for a stage to start afresh.

    Raises:
        FileExistsError: If the folder holds checkpoints of a run with another config, which
            a new run would overwrite.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        if (folder / "checkpoints").is_dir():
            raise FileExistsError(
                f"{folder} holds checkpoints but no {STATE_FILE}, so it is not a run of this "
                "study; move it away or choose another study folder (--out)"
            )
        return {}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to redo the run") from err
    if state.get("identity") == _plain(identity):
        return state
    if state.get("status") == "done" or (folder / "checkpoints").is_dir():
        raise FileExistsError(
            f"{folder} holds a run made with another config; the study will not overwrite it. "
            "Delete that folder to redo the run, or choose another study folder (--out)"
        )
    return {}  # nothing was trained with the old config: start afresh


def write_state(folder: Path, identity: dict[str, Any], status: str, **extra: Any) -> None:
    """Record a stage's status atomically, so that an interruption never leaves half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"identity": _plain(identity), "status": status, **_plain(extra)}
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / STATE_FILE)


def run_stage(
    folder: Path, stage: Stage, analyse: Callable[[Any], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Fit and test one stage in ``folder``; skip what a previous call already did.

    Returns:
        ``{"test": {metric: value}, "checkpoint": path, **analyse(cli)}``.
    """
    from zoo.cli import _finish_wandb, cli_from_python

    identity = stage.identity or stage.config
    state = read_state(folder, identity)
    if state.get("status") == "done":
        log.info("%s: finished earlier, read from %s", stage.name, folder / STATE_FILE)
        return state["results"]
    last = folder / "checkpoints" / "last.ckpt"
    try:
        fitted = state.get("status") == "fitted"
        resume = last if last.is_file() and not fitted else None
        fit_seconds = state.get("fit_seconds", 0.0)  # of earlier, interrupted attempts too
        status = "fitted" if fitted else "started"
        write_state(folder, identity, status, fit_seconds=fit_seconds)
        cli = cli_from_python(copy.deepcopy(stage.config), run=False, run_dir=folder)
        if not fitted:
            if resume is not None:
                log.info("%s: resuming from %s", stage.name, resume)
            start = time.perf_counter()
            try:
                cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume)
            finally:
                fit_seconds += time.perf_counter() - start
                write_state(folder, identity, "started", fit_seconds=fit_seconds)
            write_state(folder, identity, "fitted", fit_seconds=fit_seconds)
        ckpt = str(last) if last.is_file() else None
        start = time.perf_counter()
        tested = cli.trainer.test(
            cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False
        )
        results = {
            "test": {k: float(v) for k, v in (tested[0] if tested else {}).items()},
            "checkpoint": ckpt,
        }
        if analyse is not None:
            results.update(analyse(cli))
        results["seconds"] = {"fit": fit_seconds, "test": time.perf_counter() - start}
        write_state(folder, identity, "done", results=results)
        return _plain(results)
    finally:
        _finish_wandb()


def write_table(rows: Sequence[dict[str, Any]], path: Path, digits: int = 4) -> None:
    """Write ``rows`` as ``<path>.csv`` and as a markdown table ``<path>.md``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    path.with_suffix(".md").write_text(markdown_table(rows, digits) + "\n")


def markdown_table(rows: Sequence[dict[str, Any]], digits: int = 4) -> str:
    """Rows of dictionaries as a GitHub markdown table, floats rounded to ``digits``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


class Study:
    """Base class of studies: a list of stages, an analysis per stage and a summary.

    Subclasses implement :meth:`stages` and :meth:`summarise`, and may extend
    :meth:`analyse`. Their constructor arguments are the keys of the study config.

    Args:
        folder: Where the stages' runs and the summary go.
        seed_everything: Seed of every stage that does not set its own.
    """

    name = "study"

    def __init__(self, folder: str | Path, seed_everything: int = 0) -> None:
        self.folder = Path(folder)
        self.seed = seed_everything
        self.figures: list[Path] = []

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def analyse(self, stage: Stage, cli: Any) -> dict[str, Any]:
        """Extra numbers of one stage, computed after its test (default: none)."""
        return {}

    def summarise(self, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of the results table from the results of the finished stages; draws figures."""
        raise NotImplementedError

    def save_figure(self, figure: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` in the study folder."""
        import matplotlib.pyplot as plt

        path = self.folder / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        self.figures.append(path)
        return path

    def run(self, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Run the stages not yet finished (those named in ``only``, if given) and summarise.

        Returns:
            The rows of the results table.
        """
        from tqdm.auto import tqdm

        stages = self.stages()
        for stage in stages:
            stage.config.setdefault("seed_everything", self.seed)
        names = [stage.name for stage in stages]
        selected = set(names) if only is None else set(only)
        unknown = sorted(selected - set(names))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; this study has {names}")

        results: dict[str, dict[str, Any]] = {}
        progress = tqdm(stages, desc=f"study {self.folder.name}", unit="run", dynamic_ncols=True)
        for stage in progress:
            progress.set_postfix_str(stage.name)
            folder = self.folder / stage.name
            if stage.name in selected:
                results[stage.name] = run_stage(
                    folder, stage, lambda cli, s=stage: self.analyse(s, cli)
                )
            else:
                state = read_state(folder, stage.identity or stage.config)
                if state.get("status") == "done":
                    results[stage.name] = state["results"]
        progress.close()

        self.figures = []
        rows = self.summarise(results)
        write_table(rows, self.folder / "results")
        self._log_to_wandb(rows)
        return rows

    def _log_to_wandb(self, rows: list[dict[str, Any]]) -> None:
        import wandb

        from zoo.cli import wandb_mode

        columns = list(dict.fromkeys(key for row in rows for key in row))
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "zoo"),
            name=f"{self.folder.name}/summary",
            dir=str(self.folder),
            mode=wandb_mode(),
            config={"study": self.name, "folder": str(self.folder)},
        )
        try:
            table = wandb.Table(
                columns=columns, data=[[row.get(c) for c in columns] for row in rows]
            )
            images = {f"figures/{path.stem}": wandb.Image(str(path)) for path in self.figures}
            run.log({"results": table, **images})
        finally:
            run.finish()


def load_study(config_path: str | Path, out: str | Path | None = None) -> Study:
    """Build the study a YAML config describes; its folder is ``out`` or ``runs/<config name>``."""
    import zoo.studies  # noqa: F401  (registers the studies)

    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"study config {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"study config {path} is not valid YAML: {err}") from err
    if not isinstance(config, dict) or "study" not in config:
        raise ValueError(
            f"{path} does not name a study: add `study: <name>` with one of {STUDIES.list()}"
        )
    arguments = dict(config)
    cls = STUDIES.get(arguments.pop("study"))
    check_arguments(cls, arguments, where=str(path))
    folder = Path(out) if out is not None else Path("runs") / path.stem
    return cls(folder=folder, **arguments)
