"""Where in frequency space robustness lives: two studies on real images.

- :class:`FrequencyBiasStudy`: the spectra of adversarial perturbations of networks that
  differ only in how they connect pixels ("Local convolutions cause an implicit bias
  towards high frequency adversarial examples", Ortega Caro et al., 2021-2024).
- :class:`FourierMaskKindsStudy`: Fourier masks of standard, adversarially trained and
  augmented networks and their band energies ("Understanding robustness and
  generalization of artificial neural networks through Fourier masks", Karantzas et
  al., 2022).
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from pathlib import Path
from typing import Any

import torch

from zoo.registry import BACKBONES, register_study
from zoo.spectral import radial_centroid
from zoo.studies.base import (
    Stage,
    Study,
    add_callback,
    check_arguments,
    fit_config,
    resolve_class,
    write_table,
)

log = logging.getLogger(__name__)

ATTACK_CALLBACK = "callbacks.AdversarialRobustnessCallback"


def _attack_arguments(attack: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Check the arguments of the robustness callback now, before anything is trained."""
    from callbacks import AdversarialRobustnessCallback

    attack = {**(attack or {}), "stage": "test"}
    check_arguments(AdversarialRobustnessCallback, attack, where)
    AdversarialRobustnessCallback(**attack)  # raises on bad eps, norm or stage
    return attack


def _robustness(cli: Any) -> dict[str, Any]:
    """The robustness callback's results of the last test, as plain values."""
    from callbacks import AdversarialRobustnessCallback

    callback = next(
        (cb for cb in cli.trainer.callbacks if isinstance(cb, AdversarialRobustnessCallback)), None
    )
    if callback is None or not callback.results:
        return {}
    results = callback.results
    out: dict[str, Any] = {
        "robust_accuracy": {f"{eps:g}": acc for eps, acc in results["robust_accuracy"].items()},
        "attacked_images": results["images"],
        "norm": callback.norm,
        "radius": callback.radius,
    }
    for kind in ("perturbation", "saliency"):
        out[kind] = {
            "hf_fraction": results[kind]["hf_fraction"],
            "profile": results[kind]["profile"].tolist(),
            "log_magnitude": results[kind]["log_magnitude"].tolist(),
        }
    out["perturbation"]["l2_norm"] = results["perturbation"].get("l2_norm")
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def white_noise_fraction(height: int, width: int, radius: float) -> float:
    """The share of a white-noise spectrum's energy above ``radius``: its share of the bins."""
    from zoo.spectral import frequency_radius

    return float((frequency_radius(height, width) > radius).double().mean())


@register_study("frequency_bias")
class FrequencyBiasStudy(Study):
    """Train one classifier per architecture, attack each and compare perturbation spectra.

    Every architecture gets the same training recipe (``classifier``) with its own
    backbone; after training, :class:`~callbacks.AdversarialRobustnessCallback` attacks the
    test images and measures the high-frequency energy fraction of the perturbations and
    of the input-gradient saliency.

    Args:
        folder: The study folder.
        classifier: ``zoo fit`` config of an ``ImageClassifier``; its ``backbone`` is set
            per architecture.
        architectures: Name -> ``{"backbone": <registered name or class path>, <backbone
            arguments>..., "model": {<classifier overrides, e.g. lr>}}``.
        attack: Arguments of ``AdversarialRobustnessCallback`` (eps grid, norm, steps,
            radius, max_batches).
        seed_everything: Seed of every run.
    """

    name = "frequency_bias"

    def __init__(
        self,
        folder: str | Path,
        classifier: dict[str, Any],
        architectures: dict[str, dict[str, Any]],
        attack: dict[str, Any] | None = None,
        seed_everything: int = 0,
    ) -> None:
        super().__init__(folder, seed_everything)
        self.classifier = fit_config(classifier, "classifier")
        if not architectures:
            raise ValueError("architectures is empty: name at least one backbone to train")
        self.architectures = {
            name: self._architecture(name, spec) for name, spec in architectures.items()
        }
        self.attack = _attack_arguments(attack, "attack")

    @staticmethod
    def _architecture(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
        spec = dict(spec or {})
        backbone = spec.pop("backbone", None)
        overrides = spec.pop("model", {}) or {}
        if backbone is None:
            raise ValueError(
                f"architecture {name!r} names no backbone; set `backbone:` to one of "
                f"{BACKBONES.list()} or a class path"
            )
        try:
            cls = resolve_class(backbone) if "." in backbone else BACKBONES.get(backbone)
        except ValueError as err:
            raise ValueError(f"architecture {name!r}: {err}") from err
        check_arguments(cls, spec, where=f"architecture {name!r}")
        defaults = {
            key: p.default
            for key, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        return {
            "backbone": {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": spec},
            "model": overrides,
            "resolved": {**defaults, **spec},
            "kind": backbone,
        }

    def stages(self) -> list[Stage]:
        stages = []
        for name, architecture in self.architectures.items():
            config = copy.deepcopy(self.classifier)
            init_args = config["model"]["init_args"]
            init_args.update(copy.deepcopy(architecture["model"]))
            init_args["backbone"] = copy.deepcopy(architecture["backbone"])
            add_callback(config, ATTACK_CALLBACK, self.attack)
            stages.append(Stage(name, config, metadata=architecture))
        return stages

    def analyse(self, stage: Stage, cli: Any) -> dict[str, Any]:
        from zoo.nn import count_parameters

        return {"parameters": count_parameters(cli.model.backbone), **_robustness(cli)}

    def summarise(self, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for name, result in results.items():
            spec = self.architectures[name]
            args = spec["resolved"]
            timm_kwargs = args.get("model_kwargs") or {}
            row: dict[str, Any] = {
                "architecture": name,
                "backbone": spec["kind"],
                "activation": args.get("activation", "gelu" if spec["kind"] == "timm" else None),
                "layers": args.get("num_layers", timm_kwargs.get("depth")),
                "kernel_size": args.get("kernel_size"),
                "parameters": result.get("parameters"),
                "test_acc": result["test"].get("test/acc"),
            }
            for eps, accuracy in result.get("robust_accuracy", {}).items():
                if float(eps) > 0:
                    row[f"robust_acc@{eps}"] = accuracy
            if "perturbation" in result:
                row["perturbation_hf"] = result["perturbation"]["hf_fraction"]
                row["perturbation_l2"] = result["perturbation"].get("l2_norm")
                row["saliency_hf"] = result["saliency"]["hf_fraction"]
            row["train_seconds"] = result.get("seconds", {}).get("fit")
            rows.append(row)
        attacked = {name: r for name, r in results.items() if "perturbation" in r}
        if attacked:
            self._draw(attacked)
        return rows

    def _draw(self, results: dict[str, dict[str, Any]]) -> None:
        plt = _pyplot()
        names = list(results)
        first = next(iter(results.values()))
        height, width = torch.tensor(first["perturbation"]["log_magnitude"]).shape
        noise = white_noise_fraction(height, width, first["radius"])

        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 3.5))
        positions = torch.arange(len(names)).float()
        for offset, kind in ((-0.2, "perturbation"), (0.2, "saliency")):
            values = [results[n][kind]["hf_fraction"] for n in names]
            ax.bar((positions + offset).numpy(), values, width=0.4, label=kind)
        ax.axhline(noise, color="gray", linestyle="--", label="white noise")
        ax.set_xticks(positions.numpy(), names, rotation=45, ha="right")
        ax.set(ylabel=f"energy fraction above r = {first['radius']:g}", ylim=(0, 1))
        ax.legend(fontsize=8)
        self.save_figure(fig, "hf_fraction")

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
        for ax, kind in zip(axes, ("perturbation", "saliency"), strict=True):
            for name in names:
                profile = torch.tensor(results[name][kind]["profile"])
                radii = (torch.arange(len(profile)) + 0.5) * math.sqrt(2) / len(profile)
                ax.semilogy(radii.numpy(), (profile / profile.sum()).numpy(), label=name)
            ax.set(xlabel="radius (Nyquist units)", title=f"{kind}: radial power (sums to 1)")
        axes[0].set_ylabel("share of power")
        axes[1].legend(fontsize=7, ncol=2)
        self.save_figure(fig, "radial_profiles")

        columns = min(5, len(names))
        rows = math.ceil(len(names) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, name in zip(axes.flat, names, strict=False):
            ax.imshow(results[name]["perturbation"]["log_magnitude"], cmap="magma")
            ax.set_title(name, fontsize=8)
        fig.suptitle("perturbation log(1 + |FFT|), DC centred")
        self.save_figure(fig, "perturbation_spectra")

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name in names:
            accuracy = results[name]["robust_accuracy"]
            ax.plot([float(e) for e in accuracy], list(accuracy.values()), marker="o", label=name)
        ax.set(xlabel=f"eps ({first['norm']}, pixel units)", ylabel="accuracy", ylim=(0, 1))
        ax.legend(fontsize=7, ncol=2)
        self.save_figure(fig, "robust_accuracy")


@register_study("fourier_mask_kinds")
class FourierMaskKindsStudy(Study):
    """Fourier masks of differently trained classifiers, compared band by band.

    For every kind (standard, adversarial, scale, translation, rotation, ...) a classifier
    is trained with the kind's overrides of ``classifier`` (PGD training, augmentation),
    tested (with an attack, if ``attack`` is given), and a data-set Fourier mask is fitted
    in front of it with ``mask``. The summary gives each mask's radial and angular band
    energies (normalised mask, Karantzas et al., 2022) and their differences from the
    ``reference`` kind's mask.

    Args:
        folder: The study folder.
        classifier: ``zoo fit`` config of the classifiers.
        mask: ``zoo fit`` config of ``MaskedFourierClassifier``; its ``classifier`` is set
            to each kind's trained checkpoint.
        kinds: Name -> overrides of the classifier's ``init_args``.
        reference: The kind the others are compared with.
        attack: Arguments of ``AdversarialRobustnessCallback`` for testing the classifiers;
            ``None`` skips the attack.
        seed_everything: Seed of every run.
    """

    name = "fourier_mask_kinds"

    def __init__(
        self,
        folder: str | Path,
        classifier: dict[str, Any],
        mask: dict[str, Any],
        kinds: dict[str, dict[str, Any]],
        reference: str = "standard",
        attack: dict[str, Any] | None = None,
        seed_everything: int = 0,
    ) -> None:
        super().__init__(folder, seed_everything)
        self.classifier = fit_config(classifier, "classifier")
        self.mask = fit_config(mask, "mask")
        if not kinds:
            raise ValueError("kinds is empty: name at least the reference kind")
        if reference not in kinds:
            raise ValueError(f"reference {reference!r} is not one of the kinds {list(kinds)}")
        model_class = resolve_class(self.classifier["model"]["class_path"])
        for name, overrides in kinds.items():
            check_arguments(model_class, overrides or {}, where=f"kind {name!r}")
        self.kinds = {name: dict(overrides or {}) for name, overrides in kinds.items()}
        self.reference = reference
        self.attack = None if attack is None else _attack_arguments(attack, "attack")

    def stages(self) -> list[Stage]:
        stages = []
        for kind, overrides in self.kinds.items():
            config = copy.deepcopy(self.classifier)
            config["model"]["init_args"].update(copy.deepcopy(overrides))
            if self.attack is not None:
                add_callback(config, ATTACK_CALLBACK, self.attack)
            stages.append(Stage(f"{kind}/classifier", config, metadata={"kind": kind}))

            mask = copy.deepcopy(self.mask)
            checkpoint = self.folder / kind / "classifier" / "checkpoints" / "last.ckpt"
            identity = copy.deepcopy(mask)
            identity["model"]["init_args"]["classifier"] = f"{kind}/classifier"
            mask["model"]["init_args"]["classifier"] = str(checkpoint.resolve())
            stages.append(Stage(f"{kind}/mask", mask, identity=identity, metadata={"kind": kind}))
        return stages

    def analyse(self, stage: Stage, cli: Any) -> dict[str, Any]:
        if stage.name.endswith("/classifier"):
            return _robustness(cli)
        from zoo.spectral import effective_filter

        model = cli.model
        energies = model.band_energies()
        mask = effective_filter(model.mask.weight.detach()).mean(dim=(0, 1))
        return {
            "mask_l1": float(model.mask.l1_fraction()),
            "radial": energies["radial"].mean(dim=(0, 1)).tolist(),
            "angular": energies["angular"].mean(dim=(0, 1)).tolist(),
            "mask": torch.fft.fftshift(mask).tolist(),
        }

    def summarise(self, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        reference = results.get(f"{self.reference}/mask")
        if reference is None:
            log.warning("the reference kind %r has no mask yet: no differences", self.reference)
        rows, bands = [], []
        for kind in self.kinds:
            classifier, mask = results.get(f"{kind}/classifier"), results.get(f"{kind}/mask")
            if classifier is None:
                continue
            row: dict[str, Any] = {"kind": kind, "test_acc": classifier["test"].get("test/acc")}
            for eps, accuracy in classifier.get("robust_accuracy", {}).items():
                if float(eps) > 0:
                    row[f"robust_acc@{eps}"] = accuracy
            if mask is not None:
                radial, angular = torch.tensor(mask["radial"]), torch.tensor(mask["angular"])
                row["mask_clean_acc"] = mask["test"].get("test/clean_acc")
                row["mask_masked_acc"] = mask["test"].get("test/masked_acc")
                row["mask_l1"] = mask["mask_l1"]
                row["radial_centroid"] = float(radial_centroid(radial.double()))
                row["angular_anisotropy"] = float((angular.max() - angular.min()) / angular.mean())
                if reference is not None:
                    d_radial = radial - torch.tensor(reference["radial"])
                    d_angular = angular - torch.tensor(reference["angular"])
                    half = len(radial) // 2
                    row["d_radial_low"] = float(d_radial[:half].sum())
                    row["d_radial_high"] = float(d_radial[half:].sum())
                    row["d_angular_max_abs"] = float(d_angular.abs().max())
                for family, values in (("radial", radial), ("angular", angular)):
                    base = None if reference is None else torch.tensor(reference[family])
                    for band, value in enumerate(values.tolist()):
                        difference = None if base is None else value - float(base[band])
                        bands.append(
                            {
                                "kind": kind,
                                "bands": family,
                                "band": band,
                                "energy": value,
                                "difference": difference,
                            }
                        )
            seconds = [r.get("seconds", {}).get("fit") for r in (classifier, mask or {})]
            row["train_seconds"] = sum(t for t in seconds if t is not None) or None
            rows.append(row)
        if bands:
            write_table(bands, self.folder / "band_energies", digits=5)
            self._draw({k: results[f"{k}/mask"] for k in self.kinds if f"{k}/mask" in results})
        return rows

    def _draw(self, masks: dict[str, dict[str, Any]]) -> None:
        plt = _pyplot()
        kinds = list(masks)
        fig, axes = plt.subplots(1, len(kinds), figsize=(2.4 * len(kinds), 2.6), squeeze=False)
        for ax, kind in zip(axes[0], kinds, strict=True):
            ax.imshow(masks[kind]["mask"], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{kind}\nL1 {masks[kind]['mask_l1']:.2f}", fontsize=8)
            ax.axis("off")
        fig.suptitle("effective Fourier masks, DC centred")
        self.save_figure(fig, "masks")

        reference = masks.get(self.reference)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        for ax, family in zip(axes, ("radial", "angular"), strict=True):
            for kind in kinds:
                values = torch.tensor(masks[kind][family])
                if reference is not None:
                    if kind == self.reference:
                        continue
                    values = values - torch.tensor(reference[family])
                ax.plot(values.numpy(), marker=".", label=kind)
            ax.axhline(0, color="gray", linewidth=0.8)
            unit = "ring (DC to corner)" if family == "radial" else "wedge (0 to 360 deg)"
            label = "energy" if reference is None else f"energy - {self.reference}"
            ax.set(xlabel=unit, ylabel=label, title=f"{family} band energy")
            ax.legend(fontsize=8)
        self.save_figure(fig, "band_energy_differences")
