"""Frame fitting (stretch, letterbox, centre crop), the card's refusals, and old manifests' digests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgewise.core.errors import ConfigError, ModelError
from edgewise.core.manifest import InputSpec, Manifest
from edgewise.core.model_card import card_from_dict
from edgewise.core.preprocess import Preprocessor


def _spec(**fields) -> InputSpec:
    base = {"shape": [1, 3, 40, 80], "resize": [40, 80], "scale": 1.0, "color_order": "BGR", "dtype": "uint8"}
    return InputSpec(**{**base, **fields})


def test_letterbox_keeps_the_aspect_and_pads_centred() -> None:
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)  # square frame into a 40x80 input
    image, placement = Preprocessor(_spec(resize_mode="letterbox", pad_value=7)).fit(frame)
    assert image.shape == (40, 80, 3)
    assert (image[:, :20] == 7).all() and (image[:, 60:] == 7).all() and (image[:, 20:60] == 200).all()
    assert placement.to_frame((20, 0, 60, 40)) == pytest.approx((0, 0, 100, 100))


def test_center_crop_cuts_the_middle_and_stretch_fills() -> None:
    frame = np.zeros((100, 400, 3), dtype=np.uint8)
    frame[:, 150:250] = 255  # a bright middle stripe 100 wide
    crop, _ = Preprocessor(_spec(shape=[1, 3, 50, 50], resize=[50, 50], resize_mode="center-crop")).fit(frame)
    assert crop.shape == (50, 50, 3) and (crop[:, 5:45] == 255).all()  # the middle survives, the sides do not
    stretched, placement = Preprocessor(_spec(shape=[1, 3, 50, 50], resize=[50, 50])).fit(frame)
    assert stretched.shape == (50, 50, 3) and placement.scale_x == pytest.approx(50 / 400)


def test_a_card_refuses_what_it_leaves_open_or_contradicts() -> None:
    card = {"input": {"shape": [1, 3, 8, 8], "layout": "NCHW", "dtype": "float32", "color_order": None,
                      "resize": [8, 8], "resize_mode": "stretch", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]},
            "output": {"decode": "logits"}}
    with pytest.raises(ConfigError, match="leaves input.color_order undecided"):
        card_from_dict(card)
    card["input"]["color_order"] = "RGB"
    assert card_from_dict(card).input.color_order == "RGB"
    for change, problem in (({"resize_mode": "letterbox"}, "pad_value"), ({"resize": [8, 16]}, "fixed width 8"),
                            ({"std": [1, 0, 1]}, "std must not be 0")):
        with pytest.raises(ConfigError, match=problem):
            card_from_dict({**card, "input": {**card["input"], **change}})


def test_a_manifest_from_before_the_card_keeps_its_digest() -> None:
    old = {"schema_version": 1, "name": "m", "version": "1", "task": "classify", "labels": ["a"],
           "input": {"shape": [1, 3, 8, 8], "dtype": "float32", "layout": "NCHW", "color_order": "RGB",
                     "resize": [8, 8], "scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
           "variants": [{"name": "cpu", "file": "model.onnx"}]}
    manifest = Manifest.model_validate(old)
    assert "resize_mode" not in json.loads(manifest.canonical_bytes())["input"]  # the signed bytes are unchanged
    assert Manifest.model_validate(json.loads(manifest.canonical_bytes())).digest == manifest.digest


def test_a_corrupt_image_is_named_in_one_line(tmp_path) -> None:
    from edgewise.core.errors import DatasetError
    from edgewise.core.preprocess import read_frame

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match="cannot decode image .*broken.png") as caught:
        read_frame(broken)
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="HxWx3 uint8"):
        Preprocessor(_spec()).fit(np.zeros((4, 4, 3), dtype=np.float32))
