"""Tests of FreqAdvSegmentLib.models: specs, building, safe checkpoints, bundles, registry.

CPU only, small networks (a 32^3 UNETR with hidden size 96), a few seconds in all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from FreqAdvSegmentLib.organs import BTCV_LABELS
from FreqAdvSegmentLib.models import (
    ModelSpec,
    build_model,
    list_models,
    load_model,
    paper_unetr_spec,
    registry_spec,
    resolve_model,
    save_model,
)
from FreqAdvSegmentLib.models.factory import network_args
from FreqAdvSegmentLib.models.registry import sha256_of
from FreqAdvSegmentLib.models.remap import fit_state_dict

THREE_LABELS = ("background", "liver", "tumour")


def small_unetr_spec(out_channels: int = 14) -> ModelSpec:
    """UNETR shaped like the paper's (perceptron patches, instance norm), but tiny."""
    labels = (
        BTCV_LABELS
        if out_channels == 14
        else ("background",) + tuple(f"organ {i}" for i in range(1, out_channels))
    )
    return ModelSpec(
        arch="unetr",
        arch_args={
            "out_channels": out_channels,
            "img_size": (32, 32, 32),
            "feature_size": 8,
            "hidden_size": 96,
            "mlp_dim": 192,
            "num_heads": 4,
            "proj_type": "perceptron",
        },
        label_names=labels,
        roi_size=(32, 32, 32),
    )


def small_unet_spec() -> ModelSpec:
    return ModelSpec(
        arch="unet",
        arch_args={"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1},
        roi_size=(16, 16, 16),
    )


SMALL_SPECS = {
    "unetr": (small_unetr_spec(), 32),
    "swinunetr": (
        ModelSpec(
            arch="swinunetr",
            arch_args={"feature_size": 12, "depths": (1, 1, 1, 1)},
            label_names=THREE_LABELS,
            roi_size=(64, 64, 64),
        ),
        64,  # 32 would leave a 1^3 bottleneck, where instance norm is undefined
    ),
    "unet": (small_unet_spec(), 16),
    "segresnet": (
        ModelSpec(arch="segresnet", arch_args={"init_filters": 8}, label_names=THREE_LABELS),
        16,
    ),
}


def volume(size: int, seed: int = 0) -> torch.Tensor:
    """[1, 1, size, size, size] reproducible random input in [0, 1]."""
    return torch.rand(1, 1, size, size, size, generator=torch.Generator().manual_seed(seed))


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def to_monai07(state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """Today's UNETR state dict in the MONAI 0.7 layout of the paper's checkpoints."""
    old = {k: v.clone() for k, v in state.items() if ".norm_cross_attn." not in k}
    old["vit.patch_embedding.cls_token"] = torch.zeros(1, 1, hidden_size)
    return old


class Payload:
    """Pickles to a call of os.mkdir(marker): proof of code execution if ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# ---- ModelSpec


def test_spec_json_round_trip_and_channels():
    spec = small_unet_spec()
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert (again.in_channels, again.out_channels) == (1, 14)
    assert again.label_names == BTCV_LABELS
    assert paper_unetr_spec() == ModelSpec.from_json(paper_unetr_spec().to_json())


def test_paper_unetr_spec_matches_the_paper():
    spec = paper_unetr_spec()
    expected = {
        "feature_size": 16,
        "hidden_size": 768,
        "mlp_dim": 3072,
        "num_heads": 12,
        "proj_type": "perceptron",
        "norm_name": "instance",
        "res_block": True,
        "conv_block": True,
        "dropout_rate": 0.0,
        "img_size": (96, 96, 96),
        "in_channels": 1,
        "out_channels": 14,
    }
    assert spec.arch == "unetr" and spec.arch_args == expected
    assert spec.roi_size == (96, 96, 96) and spec.intensity_window == (-175.0, 250.0)
    assert spec.target_spacing == (1.5, 1.5, 2.0) and spec.orientation == "RAS"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"arch": "vnet"}, "arch"),
        ({"roi_size": [96, 96]}, "roi_size"),
        ({"roi_size": [96, 96, 96.5]}, "roi_size"),
        ({"intensity_window": [250, -175]}, "intensity_window"),
        ({"target_spacing": [1, 1, "2"]}, "target_spacing"),
        ({"target_spacing": [1, 1, True]}, "target_spacing"),
        ({"label_names": "spleen"}, "label_names"),
        ({"orientation": "RAX"}, "orientation"),
        ({"arch_args": {"out_channels": 3}}, "arch_args.out_channels"),
        ({"arch_args": {"channels": {1, 2}}}, "arch_args.channels"),
        ({"arch_args": [1, 2]}, "arch_args"),
        ({"colour": "red"}, "colour"),
        ({"format": 99}, "format"),
    ],
)
def test_spec_validation_names_the_field(change, field):
    data = {**json.loads(small_unet_spec().to_json()), **change}
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ModelSpec.from_dict(data)


def test_spec_from_json_rejects_bad_json_and_missing_arch():
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelSpec.from_json("{not json")
    with pytest.raises(ValueError, match="'arch'"):
        ModelSpec.from_json("{}")


def test_unetr_img_size_must_equal_roi_size():
    with pytest.raises(ValueError, match="img_size"):
        ModelSpec(arch="unetr", arch_args={"img_size": 64}, roi_size=(96, 96, 96))


def test_unknown_arch_lists_known_ones():
    with pytest.raises(ValueError, match="unetr.*swinunetr.*unet.*segresnet"):
        ModelSpec(arch="vnet")
    spec = small_unet_spec()
    spec.arch = "vnet"  # bypasses __post_init__, as a careless caller might
    with pytest.raises(ValueError, match="known: unetr, swinunetr, unet, segresnet"):
        build_model(spec)


# ---- factory


@pytest.mark.parametrize("arch", list(SMALL_SPECS))
def test_each_arch_builds_and_segments(arch):
    spec, size = SMALL_SPECS[arch]
    out = logits(build_model(spec), volume(size))
    assert out.shape == (1, spec.out_channels, size, size, size)
    assert torch.isfinite(out).all()


def test_minimal_arch_args_get_defaults():
    args = network_args(ModelSpec(arch="unet"))
    assert args["channels"] == (16, 32, 64, 128) and args["strides"] == (2, 2, 2)
    assert args["spatial_dims"] == 3 and args["out_channels"] == 14
    assert network_args(ModelSpec(arch="unetr"))["img_size"] == (96, 96, 96)


def test_unknown_network_argument_is_named():
    spec = ModelSpec(arch="unet", arch_args={"chanels": (8, 16)})
    with pytest.raises(ValueError, match="chanels"):
        build_model(spec)


# ---- safetensors round trip


@pytest.mark.parametrize("arch", ["unet", "unetr"])
def test_safetensors_round_trip(tmp_path, arch):
    spec, size = SMALL_SPECS[arch]
    model = build_model(spec)
    path = save_model(tmp_path / "model.safetensors", model, spec)
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec
    x = volume(size)
    assert torch.equal(logits(loaded, x), logits(model, x))
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temp file left behind


def test_saved_file_carries_spec_in_metadata(tmp_path):
    from safetensors import safe_open

    spec = small_unet_spec()
    path = save_model(tmp_path / "m.safetensors", build_model(spec), spec)
    with safe_open(str(path), framework="pt") as file:
        assert ModelSpec.from_json(file.metadata()["freqadv_spec"]) == spec


def test_given_spec_overrides_stored_one(tmp_path):
    spec = small_unet_spec()
    path = save_model(tmp_path / "m.safetensors", build_model(spec), spec)
    other = ModelSpec.from_dict({**spec.to_dict(), "intensity_window": [-100, 200]})
    assert load_model(path, spec=other)[1] == other


def test_save_refuses_wrong_suffix_and_misfitting_spec(tmp_path):
    model = build_model(small_unet_spec())
    with pytest.raises(ValueError, match="safetensors"):
        save_model(tmp_path / "m.pt", model, small_unet_spec())
    with pytest.raises(ValueError, match="does not fit"):
        save_model(tmp_path / "m.safetensors", model, small_unetr_spec())
    assert not list(tmp_path.iterdir())


# ---- the paper's checkpoints: MONAI 0.7 UNETR in .pt files


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_monai07_unetr_checkpoint_loads(tmp_path, key, prefix):
    spec = small_unetr_spec()
    model = build_model(spec)
    old = to_monai07(model.state_dict(), hidden_size=96)
    old = {prefix + k: v for k, v in old.items()}
    # What the paper's trainer.py writes beside the weights (numpy scalars included).
    content = {key: old, "epoch": 4999, "best_acc": np.float64(0.743), "epoch_acc": np.mean([0.7])}
    torch.save(content, tmp_path / "model_best.pt")

    loaded, loaded_spec = load_model(tmp_path / "model_best.pt", spec=spec)
    assert loaded_spec == spec
    x = volume(32)
    assert torch.equal(logits(loaded, x), logits(model, x))


def test_numpy1_scalars_in_checkpoint_are_accepted(tmp_path):
    # The paper's files were written under numpy 1, which names the scalar constructor
    # numpy.core.multiarray.scalar; reproduce that name while saving.
    scalar = pytest.importorskip("numpy._core.multiarray").scalar  # numpy >= 2 only

    model = build_model(small_unet_spec())
    scalar.__module__ = "numpy.core.multiarray"
    try:
        content = {"state_dict": model.state_dict(), "best_acc": np.float64(0.5)}
        torch.save(content, tmp_path / "a.pt")
    finally:
        scalar.__module__ = "numpy._core.multiarray"
    load_model(tmp_path / "a.pt", spec=small_unet_spec())


def test_paper_size_unetr_remap_fits():
    # Names and shapes only (meta device): the full 96^3, 12-layer paper UNETR.
    spec = paper_unetr_spec()
    with torch.device("meta"):
        reference = build_model(spec).state_dict()
    old = to_monai07(reference, hidden_size=768)
    assert "vit.blocks.11.norm_cross_attn.weight" not in old
    fitted = fit_state_dict(old, reference, "unetr")
    assert set(fitted) == set(reference)
    assert all(fitted[k].shape == reference[k].shape for k in reference)


def test_pt_with_spec_entry_needs_no_spec(tmp_path):
    spec = small_unet_spec()
    model = build_model(spec)
    torch.save({"state_dict": model.state_dict(), "spec": spec.to_json()}, tmp_path / "m.pth")
    assert load_model(tmp_path / "m.pth")[1] == spec


def test_pt_without_spec_asks_for_one(tmp_path):
    torch.save(build_model(small_unetr_spec()).state_dict(), tmp_path / "raw.pt")
    with pytest.raises(ValueError, match=r"no model spec.*--arch.*look like a unetr"):
        load_model(tmp_path / "raw.pt")


def test_unet_checkpoint_as_unetr_names_parameters_and_suggests_unet(tmp_path):
    torch.save({"state_dict": build_model(small_unet_spec()).state_dict()}, tmp_path / "u.pt")
    with pytest.raises(ValueError) as info:
        load_model(tmp_path / "u.pt", spec=small_unetr_spec())
    message = str(info.value)
    assert "missing (" in message and "vit.patch_embedding" in message
    assert "unexpected (" in message and "model.0." in message
    assert "--arch unet" in message


def test_shape_mismatch_is_reported(tmp_path):
    torch.save(build_model(small_unetr_spec(out_channels=3)).state_dict(), tmp_path / "s.pt")
    with pytest.raises(ValueError) as info:
        load_model(tmp_path / "s.pt", spec=small_unetr_spec(out_channels=14))
    message = str(info.value)
    assert "shape mismatch (" in message and "out.conv.conv.weight" in message
    assert "(3, 8, 1, 1, 1)" in message and "out_channels" in message


# ---- files that are not (safe) checkpoints


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    state = build_model(small_unet_spec()).state_dict()
    torch.save({"state_dict": state, "extra": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="safely"):
        load_model(tmp_path / "evil.pt", spec=small_unet_spec())
    assert not marker.exists()
    # The payload is real: an unrestricted unpickle would have run it.
    proof = tmp_path / "proof"
    torch.save(Payload(proof), tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)
    assert proof.exists()


@pytest.mark.parametrize("name", ["junk.pt", "junk.ckpt", "junk.safetensors"])
def test_random_bytes_are_refused(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="could not read"):
        load_model(tmp_path / name, spec=small_unet_spec())


def test_non_state_dict_is_refused(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_model(tmp_path / "meta.pt", spec=small_unet_spec())


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_model(tmp_path / "nowhere.pt")
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported model file type '.h5'"):
        load_model(tmp_path / "m.h5")
    # ONNX: no gradients, so refused with its own reason.
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="ONNX model: PyTorch cannot compute gradients"):
        load_model(tmp_path / "m.onnx")


# ---- MONAI bundle folders


def write_bundle(folder: Path, network_def: dict, state: dict | None = None) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    config = {
        "imports": ["$import glob"],
        "device": "$torch.device('cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Orientationd", "keys": "image", "axcodes": "LPS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, 1.0]},
                {
                    "_target_": "ScaleIntensityRanged",
                    "keys": "image",
                    "a_min": -57,
                    "a_max": 164,
                    "b_min": 0,
                    "b_max": 1,
                    "clip": True,
                },
            ],
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32]},
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    channel_def = {str(i): name for i, name in enumerate(THREE_LABELS)}
    metadata = {"network_data_format": {"outputs": {"pred": {"channel_def": channel_def}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    if state is not None:
        torch.save(state, folder / "models" / "model.pt")
    return folder


SMALL_UNETR_NETWORK_DEF = {
    "_target_": "UNETR",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "img_size": 32,
    "feature_size": 8,
    "hidden_size": 96,
    "mlp_dim": 192,
    "num_heads": 4,
    "pos_embed": "perceptron",
    "norm_name": "instance",
    "res_block": True,
    "dropout_rate": 0.0,
}


def test_bundle_folder_loads(tmp_path):
    skip = ("_target_", "spatial_dims", "pos_embed")
    args = {k: v for k, v in SMALL_UNETR_NETWORK_DEF.items() if k not in skip}
    source_spec = ModelSpec(
        arch="unetr",
        arch_args={**args, "proj_type": "perceptron"},
        label_names=THREE_LABELS,
        roi_size=(32, 32, 32),
    )
    model = build_model(source_spec)
    folder = write_bundle(tmp_path / "bundle", SMALL_UNETR_NETWORK_DEF, model.state_dict())

    loaded, spec = load_model(folder)
    assert spec.arch == "unetr" and spec.arch_args["proj_type"] == "perceptron"
    assert spec.label_names == THREE_LABELS and spec.roi_size == (32, 32, 32)
    assert spec.target_spacing == (1.0, 1.0, 1.0) and spec.intensity_window == (-57.0, 164.0)
    assert spec.orientation == "LPS"
    x = volume(32)
    assert torch.equal(logits(loaded, x), logits(model, x))


def test_bundle_with_unknown_network_is_refused(tmp_path):
    marker = tmp_path / "ran"
    folder = write_bundle(tmp_path / "b", {"_target_": "$os.mkdir('" + str(marker) + "')"}, {})
    with pytest.raises(ValueError, match="never instantiates"):
        load_model(folder)
    assert not marker.exists()


def test_bundle_with_expression_argument_is_refused(tmp_path):
    network_def = dict(SMALL_UNETR_NETWORK_DEF, feature_size="$8 * 1")
    folder = write_bundle(tmp_path / "b", network_def, build_model(small_unetr_spec()).state_dict())
    with pytest.raises(ValueError, match="feature_size.*does not evaluate"):
        load_model(folder)


# ---- registry


def test_shipped_registry_lists_models():
    models = list_models()
    names = [m["name"] for m in models]
    assert "demo-unet" in names and "demo-unet-vaft" in names
    assert sum(name.startswith("vafa-unetr-synapse") for name in names) == 3
    for entry in models:
        assert {"name", "description", "arch", "sha256", "licence"} <= set(entry)
    assert registry_spec("vafa-unetr-synapse-vaft") == paper_unetr_spec()


def test_resolve_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="demo-unet.*vafa-unetr-synapse-clean"):
        resolve_model("no-such-model")


def write_registry(folder: Path, sha256: str | None) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "tiny.safetensors").write_bytes(b"tiny weights")
    entries = [
        {
            "name": "tiny",
            "description": "t",
            "arch": "unet",
            "file": "models/tiny.safetensors",
            "sha256": sha256,
            "licence": "MIT",
        },
        {
            "name": "remote",
            "description": "r",
            "arch": "unetr",
            "url": "https://example.org/r.pt",
            "filename": "r.pt",
            "sha256": None,
            "licence": "MIT",
        },
    ]
    (folder / "Models.json").write_text(json.dumps(entries))
    return folder / "Models.json"


def test_resolve_shipped_file_checks_sha256(tmp_path):
    good = sha256_of_bytes(b"tiny weights")
    registry = write_registry(tmp_path / "ok", good)
    assert resolve_model("tiny", registry=registry) == registry.parent / "models/tiny.safetensors"
    bad = write_registry(tmp_path / "bad", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        resolve_model("tiny", registry=bad)


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_resolve_downloaded_model_says_where_to_put_it(tmp_path):
    registry = write_registry(tmp_path / "reg", None)
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError) as info:
        resolve_model("remote", cache_dir=cache, registry=registry)
    assert "https://example.org/r.pt" in str(info.value) and str(cache / "r.pt") in str(info.value)
    cache.mkdir()
    (cache / "r.pt").write_bytes(b"x")
    assert resolve_model("remote", cache_dir=cache, registry=registry) == cache / "r.pt"


def test_resolve_paths(tmp_path):
    file = tmp_path / "mine.pt"
    file.write_bytes(b"x")
    assert resolve_model(str(file)) == file
    assert resolve_model(file) == file
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        resolve_model(tmp_path / "gone.pt")
    assert sha256_of(file) == sha256_of_bytes(b"x")
