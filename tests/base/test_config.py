import pytest

from napari_sci.base.config import Budget, FitConfig, NetworkSpec, PartitionConfig, compress_config
from napari_sci.errors import SciConfigError, SciError


def test_budget_needs_exactly_one_target():
    with pytest.raises(SciConfigError, match="exactly one"):
        Budget()
    with pytest.raises(SciConfigError, match="exactly one"):
        Budget(bpv=0.1, ratio=100)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_budget_rejects_non_positive(value):
    with pytest.raises(SciConfigError, match="positive"):
        Budget(bpv=value)


def test_budget_bytes_from_bpv_and_ratio():
    assert Budget(bpv=0.1).target_bytes(80_000, 2) == 1000
    assert Budget(ratio=100).target_bytes(80_000, 2) == 1600


@pytest.mark.parametrize(("cls", "kwargs", "word"), [
    (PartitionConfig, {"method": "octree"}, "partition method"),
    (PartitionConfig, {"max_blocks": 0}, "max_blocks"),
    (NetworkSpec, {"layers": 2}, "layers"),
    (NetworkSpec, {"fr": 0}, "fr"),
    (FitConfig, {"steps": -1}, "steps"),
    (FitConfig, {"device": "tpu"}, "device"),
])
def test_invalid_settings_name_the_field(cls, kwargs, word):
    with pytest.raises(SciConfigError, match=word):
        cls(**kwargs)


def test_flat_settings_reach_their_stage():
    config = compress_config(bpv=0.2, steps=7, max_blocks=9, fr=1.5, method="none", rule="size")
    assert config.fit.steps == 7
    assert config.partition.max_blocks == 9
    assert config.partition.method == "none"
    assert config.network.fr == 1.5
    assert config.allocation.rule == "size"


def test_unknown_setting_is_refused():
    with pytest.raises(SciError, match="unknown setting 'stepz'"):
        compress_config(bpv=0.2, stepz=3)
