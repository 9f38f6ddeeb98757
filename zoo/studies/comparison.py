"""Several models trained on the same data by the same recipe, scored side by side."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from zoo.registry import register_study
from zoo.studies.base import Stage, Study, check_arguments, fit_config, resolve_class

log = logging.getLogger(__name__)


@register_study("model_comparison")
class ModelComparisonStudy(Study):
    """Train each model with the same data and trainer, test it, and tabulate the metrics.

    Each model is tested on the data module's test split; every entry of ``evaluations``
    scores it again on the test split of a changed data module, with its own number of
    context frames, through the model's ``evaluate(batches, context)`` (e.g. a time grid
    twice as fine for interpolation in time). A model that cannot take the changed data
    gets an empty cell and a note in the log.

    Args:
        folder: The study folder.
        base: ``zoo fit`` config giving ``data`` and ``trainer`` (its ``model`` is unused).
        models: Name -> ``{"class_path": ..., "init_args": {...}}``.
        evaluations: Name -> ``{"data": {<data init_args overrides>}, "context": frames}``.
        metrics: Test metrics in the table (``stage/`` prefix left out); the first is drawn
            in ``figures/test_<metric>.png``.
        baseline_metric: A metric of ``metrics`` drawn as a dashed line in that figure (the
            baseline every model is scored against, the same for all of them), or ``None``.
        seed_everything: Seed of every run.
    """

    name = "model_comparison"

    def __init__(
        self,
        folder: str | Path,
        base: dict[str, Any],
        models: dict[str, dict[str, Any]],
        evaluations: dict[str, dict[str, Any]] | None = None,
        metrics: tuple[str, ...] = ("mse", "mse_hold_last", "rel_l2", "r2", "pearson_r2"),
        baseline_metric: str | None = "mse_hold_last",
        seed_everything: int = 0,
    ) -> None:
        super().__init__(folder, seed_everything)
        if not models:
            raise ValueError("models is empty: name at least one model to train")
        if not metrics:
            raise ValueError("metrics is empty: name at least one test metric to tabulate")
        self.base = fit_config({"model": {"class_path": "unused"}, **base}, "base")
        self.models: dict[str, dict[str, Any]] = {}
        for name, spec in models.items():
            if not isinstance(spec, dict) or "class_path" not in spec:
                raise ValueError(f"model {name!r} needs a class_path and init_args, got {spec!r}")
            try:
                cls = resolve_class(spec["class_path"])
            except ValueError as err:
                raise ValueError(f"model {name!r}: {err}") from None
            check_arguments(cls, spec.get("init_args") or {}, where=f"model {name!r}")
            self.models[name] = {
                "class_path": spec["class_path"],
                "init_args": spec.get("init_args") or {},
            }
        self.evaluations = dict(evaluations or {})
        data_class = resolve_class(self.base["data"]["class_path"])
        for name, evaluation in self.evaluations.items():
            unknown = set(evaluation) - {"data", "context"}
            if unknown:
                raise ValueError(
                    f"evaluation {name!r} has unknown keys {sorted(unknown)}; use data and context"
                )
            check_arguments(data_class, evaluation.get("data") or {}, where=f"evaluation {name!r}")
        self.metrics = tuple(metrics)
        logged = set()
        for spec in self.models.values():
            logged |= set(getattr(resolve_class(spec["class_path"]), "test_metrics", ()))
        unknown = [name for name in self.metrics if logged and name not in logged]
        if unknown:
            raise ValueError(
                f"metrics {unknown} are not logged by any of the models; they log {sorted(logged)}"
            )
        if baseline_metric is not None and baseline_metric not in self.metrics:
            raise ValueError(
                f"baseline_metric {baseline_metric!r} is not one of metrics {list(self.metrics)}; "
                "name one of them or null"
            )
        self.baseline_metric = baseline_metric

    def stages(self) -> list[Stage]:
        stages = []
        for name, model in self.models.items():
            config = copy.deepcopy(self.base)
            config["model"] = copy.deepcopy(model)
            stages.append(Stage(name, config))
        return stages

    def analyse(self, stage: Stage, cli: Any) -> dict[str, Any]:
        from zoo.nn import count_parameters

        results: dict[str, Any] = {"parameters": count_parameters(cli.model)}
        for name, evaluation in self.evaluations.items():
            data_config = copy.deepcopy(self.base["data"])
            data_config.setdefault("init_args", {}).update(evaluation.get("data") or {})
            try:
                datamodule = resolve_class(data_config["class_path"])(**data_config["init_args"])
                datamodule.setup("test")
                results[name] = cli.model.evaluate(
                    datamodule.test_dataloader(), evaluation.get("context")
                )
            except (NotImplementedError, ValueError, RuntimeError) as err:
                log.warning("%s cannot be scored on %s: %s", stage.name, name, err)
                results[name] = {"error": str(err)}
        return results

    def summarise(self, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for name, result in results.items():
            row: dict[str, Any] = {"model": name, "parameters": result.get("parameters")}
            for metric in self.metrics:
                row[metric] = result["test"].get(f"test/{metric}")
            for evaluation in self.evaluations:
                scores = result.get(evaluation, {})
                for metric in ("mse", "mse_hold_last"):
                    row[f"{evaluation}_{metric}"] = scores.get(metric)
            row["train_seconds"] = result.get("seconds", {}).get("fit")
            rows.append(row)
        if rows:
            self._draw(rows)
        return rows

    def _draw(self, rows: list[dict[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metric = self.metrics[0]
        names = [row["model"] for row in rows]
        values = [row.get(metric) for row in rows]
        fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names)), 3.2))
        ax.bar(names, [value or 0.0 for value in values], label="model")
        if self.baseline_metric is not None:
            baseline = [
                row[self.baseline_metric]
                for row in rows
                if row.get(self.baseline_metric) is not None
            ]
            label = "hold last frame" if self.baseline_metric == "mse_hold_last" else None
            if baseline:
                ax.axhline(
                    baseline[0], color="gray", linestyle="--", label=label or self.baseline_metric
                )
        positive = all(value is not None and value > 0 for value in values)
        ax.set(ylabel=f"test {metric.upper() if metric == 'mse' else metric}")
        ax.set(yscale="log" if positive else "linear")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
        self.save_figure(fig, f"test_{metric}")
