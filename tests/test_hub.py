import json
import shutil
import urllib.request

import pytest
import torch

import zoo
from zoo import hub


def test_load_pretrained_offline_in_eval_mode(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_pretrained must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    model = zoo.load_pretrained("small_cnn_mnist.digits")
    assert not model.training
    assert model.pretrained_metadata["metrics"]["test/acc"] > 0.95
    logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10)


def test_entry_records_config_checksum_and_metrics():
    entry = hub.get_entry("small_cnn_mnist.digits")
    assert (hub.PROJECT_ROOT / entry.config).is_file()
    assert hub.sha256sum(hub.PACKAGE_WEIGHTS / entry.file) == entry.sha256
    meta = json.loads((hub.PACKAGE_WEIGHTS / entry.file).with_suffix(".json").read_text())
    assert meta["preprocessing"]["mean"] == [0.1307]
    assert (hub.PACKAGE_WEIGHTS / entry.file).stat().st_size < 1_000_000


def _copy_weights(tmp_path):
    entry = hub.get_entry("small_cnn_mnist.digits")
    for suffix in (".safetensors", ".json"):
        source = (hub.PACKAGE_WEIGHTS / entry.file).with_suffix(suffix)
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / entry.file


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    weights = _copy_weights(tmp_path)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(hub, "PACKAGE_WEIGHTS", tmp_path)
    with pytest.raises(ValueError, match="checksum mismatch"):
        zoo.load_pretrained("small_cnn_mnist.digits")


def test_missing_weights_say_how_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "PACKAGE_WEIGHTS", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="zoo hub build small_cnn_mnist.digits"):
        zoo.load_pretrained("small_cnn_mnist.digits")


def test_cache_folder_and_file_path(tmp_path, monkeypatch):
    cache = tmp_path / "zoo_home" / "hub"
    cache.mkdir(parents=True)
    weights = _copy_weights(cache)
    monkeypatch.setattr(hub, "PACKAGE_WEIGHTS", tmp_path / "empty")
    assert hub.resolve_weights("small_cnn_mnist.digits") == weights
    model = zoo.load_pretrained(str(weights))
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)


def test_url_offline_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="could not download"):
        zoo.load_pretrained("https://example.invalid/weights/model.safetensors")


def test_unknown_entry_suggests_names():
    with pytest.raises(ValueError, match="did you mean"):
        zoo.load_pretrained("small_cnn_mnist.digitz")


def test_corrupt_and_truncated_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        hub.load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hub.load_checkpoint(tmp_path / "nowhere.ckpt")
    state = {"state_dict": {"w": torch.randn(100, 100)}, "hyper_parameters": {}}
    full = tmp_path / "full.ckpt"
    torch.save(state, full)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        hub.load_checkpoint(truncated)
    with pytest.raises(ValueError, match="record no class"):
        hub.load_checkpoint(full)
