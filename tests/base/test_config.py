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


def test_the_latent_grid_model_is_the_default():
    assert compress_config(bpv=0.1).model == "grid"


def test_settings_of_the_other_family_are_named():
    from napari_sci.base.config import other_family_settings

    names = ["fr", "rule", "format", "compile", "samples_per_block", "steps", "max_blocks", "entropy",
             "grid_hidden"]
    assert other_family_settings("grid", names) == ["fr", "rule", "format", "compile", "samples_per_block"]
    assert other_family_settings("siren", names) == ["entropy", "grid_hidden"]


def test_the_api_refuses_a_setting_the_model_would_ignore():
    import numpy as np

    import napari_sci

    volume = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(SciConfigError, match="fr set the siren model, but the model is grid"):
        napari_sci.compress(volume, bpv=1, fr=1.0)
    with pytest.raises(SciConfigError, match="entropy set the grid model, but the model is siren"):
        napari_sci.compress(volume, bpv=1, model="siren", entropy="predictive")
