"""The LivePortrait loader on good and broken files: each failure names the file, the problem and the fix."""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from liveportrait_fixtures import liveportrait_kit, synth_module, synth_weights_dir  # noqa: F401

from mirage_desktop.liveportrait.loader import (
    APPEARANCE_FILE,
    GENERATOR_FILE,
    MOTION_FILE,
    OFFICIAL_FOLDERS,
    STITCHING_FILE,
    LivePortraitLoadError,
    load_network,
    load_networks,
    load_retargeting,
    locate,
)

FIX = "mirage-models download liveportrait"


@dataclass
class NotATensor:
    """Pickled into a file to check that weights-only loading refuses arbitrary objects."""

    value: int


def _linked_copy(src: Path, dst: Path, tree: bool = False) -> Path:
    """The five files as symlinks (no 520 MB copy), flat or in the official tree."""
    for name, folder in OFFICIAL_FOLDERS.items():
        target = dst / "liveportrait" / folder / name if tree else dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src / name, target)
    return dst


@pytest.fixture
def weights(synth_weights_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    return _linked_copy(synth_weights_dir, tmp_path / "weights")


def _replace(folder: Path, name: str, obj: object) -> Path:
    path = folder / name
    path.unlink()
    torch.save(obj, path)
    return path


def _error(fn: object, *args: object) -> str:
    with pytest.raises(LivePortraitLoadError) as info:
        fn(*args)  # type: ignore[operator]
    message = str(info.value)
    assert FIX in message
    return message


def test_official_tree_and_flat_folder_both_load(synth_weights_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    tree = _linked_copy(synth_weights_dir, tmp_path / "models", tree=True)
    for root in (tree, tree / "liveportrait"):
        assert locate(root, STITCHING_FILE) == tree / "liveportrait" / "retargeting_models" / STITCHING_FILE
    net = load_network(tree / "liveportrait", APPEARANCE_FILE)
    flat = load_network(synth_weights_dir, APPEARANCE_FILE)
    for (key, a), (_, b) in zip(net.state_dict().items(), flat.state_dict().items()):
        assert torch.equal(a, b), key
    assert not net.training


def test_spectral_norm_weight_is_weight_orig_over_sigma(synth_weights_dir: Path) -> None:  # noqa: F811
    generator = load_network(synth_weights_dir, GENERATOR_FILE)
    conv = generator.up_1.conv_s
    w = conv.weight_orig.double().reshape(conv.weight_orig.shape[0], -1)
    sigma = conv.weight_u.double() @ (w @ conv.weight_v.double())
    assert 1.0 < float(sigma) < 2.0  # the kit: sigma is 1.13 ... 1.66
    torch.testing.assert_close(conv.weight.double(), conv.weight_orig.double() / sigma, rtol=1e-6, atol=0)


def test_missing_file_names_where_it_looked(weights: Path) -> None:
    (weights / MOTION_FILE).unlink()
    message = _error(load_networks, weights)
    assert MOTION_FILE in message and str(weights / "base_models" / MOTION_FILE) in message


def test_missing_folder(tmp_path: Path) -> None:
    assert str(tmp_path / "absent") in _error(load_networks, tmp_path / "absent")


def test_truncated_file(weights: Path, synth_weights_dir: Path) -> None:  # noqa: F811
    path = weights / APPEARANCE_FILE
    data = (synth_weights_dir / APPEARANCE_FILE).read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "truncated" in message


def test_not_a_checkpoint(weights: Path) -> None:
    path = weights / APPEARANCE_FILE
    path.unlink()
    path.write_text("<html>404 Not Found</html>")
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "not a PyTorch checkpoint" in message


def test_arbitrary_objects_are_refused(weights: Path) -> None:
    path = _replace(weights, APPEARANCE_FILE, {"first.conv.weight": NotATensor(1)})
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "weights-only" in message and "NotATensor" in message


def test_wrong_kind_of_object(weights: Path) -> None:
    path = _replace(weights, APPEARANCE_FILE, torch.zeros(3))
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "holds a Tensor" in message


def test_another_networks_file_in_the_slot(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    path = _replace(weights, APPEARANCE_FILE, synth_module.build_checkpoint(STITCHING_FILE)["retarget_eye"])
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "missing keys" in message and "unexpected keys" in message


def test_wrong_keys_are_listed(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    state = synth_module.build_checkpoint(APPEARANCE_FILE)
    renamed = OrderedDict((k.replace("3dr5", "3dr6"), v) for k, v in state.items())
    _replace(weights, APPEARANCE_FILE, renamed)
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert "resblocks_3d.3dr5.conv1.weight" in message  # missing
    assert "resblocks_3d.3dr6.conv1.weight" in message  # unexpected


def test_wrong_shapes_are_listed(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    state = synth_module.build_checkpoint(APPEARANCE_FILE)
    state["second.weight"] = torch.zeros(256, 256, 1, 1)
    path = _replace(weights, APPEARANCE_FILE, state)
    message = _error(load_network, weights, APPEARANCE_FILE)
    assert str(path) in message and "second.weight: (256, 256, 1, 1) != expected (512, 256, 1, 1)" in message


def test_stitching_entries_are_read_by_name_and_extras_tolerated(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    ckpt = synth_module.build_checkpoint(STITCHING_FILE)
    extended = OrderedDict([("retarget_other", {"x": torch.zeros(2)}), ("epoch", 7)])
    for name in reversed(list(ckpt)):  # other order, extra entries first
        extended[name] = ckpt[name]
    _replace(weights, STITCHING_FILE, extended)
    stitching, lip, eye = load_retargeting(weights)
    assert torch.equal(stitching.mlp[0].weight, ckpt["retarget_shoulder"]["module.mlp.0.weight"])
    assert torch.equal(lip.mlp[6].bias, ckpt["retarget_mouth"]["module.mlp.6.bias"])
    assert torch.equal(eye.mlp[10].weight, ckpt["retarget_eye"]["module.mlp.10.weight"])


def test_stitching_file_without_an_entry(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    ckpt = synth_module.build_checkpoint(STITCHING_FILE)
    del ckpt["retarget_eye"]
    path = _replace(weights, STITCHING_FILE, ckpt)
    message = _error(load_retargeting, weights)
    assert str(path) in message and "retarget_eye" in message


def test_stitching_entry_with_wrong_shape(weights: Path, synth_module: ModuleType) -> None:  # noqa: F811
    ckpt = synth_module.build_checkpoint(STITCHING_FILE)
    ckpt["retarget_mouth"]["module.mlp.0.weight"] = torch.zeros(128, 66)
    _replace(weights, STITCHING_FILE, ckpt)
    message = _error(load_retargeting, weights)
    assert "retarget_mouth" in message and "mlp.0.weight: (128, 66) != expected (128, 65)" in message


def test_a_copy_of_the_tree_loads_completely(synth_weights_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """Real files (not links) in the official tree, as `mirage-models download` lays them out."""
    root = tmp_path / "models"
    for name, folder in OFFICIAL_FOLDERS.items():
        if name in (APPEARANCE_FILE, STITCHING_FILE, MOTION_FILE):
            (root / "liveportrait" / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(synth_weights_dir / name, root / "liveportrait" / folder / name)
    assert load_network(root, MOTION_FILE).detector.fc_kp.weight.shape == (63, 768)
    assert len(load_retargeting(root)) == 3
