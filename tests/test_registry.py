import pytest

import zoo
from zoo.registry import Registry


def test_list_and_create_models():
    assert "masked_fourier_classifier" in zoo.list_models("mask*")
    assert zoo.list_models("mask*") == ["masked_fourier_classifier"]
    model = zoo.create_model("image_classifier", backbone={"class_path": "zoo.nn.MLP"})
    assert type(model).__name__ == "ImageClassifier"


def test_duplicate_name_is_an_error():
    registry = Registry("model")

    @registry.register("net")
    def first():
        return 1

    with pytest.raises(ValueError, match="already registered"):

        @registry.register("net")
        def second():
            return 2

    assert registry.create("net") == 1


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'masked_fourier_classifier'"):
        zoo.create_model("masked_fourier_clasifier")
