import pytest

from harness.core.errors import RegistryError
from harness.core.registry import Registry


def test_register_get_and_list_with_descriptions():
    reg = Registry("widget")

    @reg.register("alpha", "first widget")
    def alpha():
        return 1

    @reg.register("beta")
    def beta():
        """Second widget.

        More text."""
        return 2

    assert reg.names() == ["alpha", "beta"]
    assert reg.create("ALPHA") == 1
    assert [e.description for e in reg] == ["first widget", "Second widget."]


def test_unknown_name_lists_valid_names():
    reg = Registry("widget")
    reg.register("alpha", factory=lambda: 1)
    reg.register("beta", factory=lambda: 2)
    with pytest.raises(RegistryError, match=r"unknown widget 'gamma'; valid widgets: alpha, beta"):
        reg.get("gamma")


def test_duplicate_name_is_an_error():
    reg = Registry("widget")
    reg.register("alpha", factory=lambda: 1)
    with pytest.raises(RegistryError, match="duplicate widget name 'Alpha'"):
        reg.register("Alpha", factory=lambda: 2)


def test_builtin_methods_sources_and_datasets_are_registered():
    from harness.data.cards import DATASETS
    from harness.keypoints.sources import KEYPOINT_SOURCES
    from harness.method import METHODS

    assert {"vit", "kpe", "ckpe", "random"} <= set(METHODS.names())
    assert {"ground-truth", "random"} <= set(KEYPOINT_SOURCES.names())
    assert "synthetic" in DATASETS.names()
    assert METHODS.create("ckpe").encoding == "categorical"
    assert METHODS.create("kpe").encoding == "binary"
    assert METHODS.create("random").point_source == "random"
    assert not METHODS.create("vit").uses_keypoints
