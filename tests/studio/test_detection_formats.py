"""Detection datasets on disk: COCO / YOLO / VOC round trips, bad files named, `data check` and its CLI."""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from edgewise.cli.main import app, main
from edgewise.core.errors import DatasetError
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.check import check_dataset, check_splits, clean_dataset
from edgewise.studio.detect.formats import detect_format, image_name, read_dataset, write_dataset

LABELS = ["car", "person", "bike"]  # not sorted: the order must survive VOC, which has none of its own


def make_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 30)).save(path)


def source_splits(folder: Path) -> dict[str, DetectionSet]:
    """Two splits: several boxes of 3 classes, fractional corners, a 2-frame clip and a background frame."""
    for name, size in {
        "a.png": (64, 48),
        "clip1/000000.png": (40, 30),
        "clip1/000001.png": (40, 30),
        "empty.png": (32, 32),
        "b.png": (50, 50),
    }.items():
        make_image(folder / name, *size)
    train = [
        AnnotatedImage(
            "a.png", 64, 48, [[0, 0, 10, 10], [5.25, 6.5, 30.75, 47.125], [40.1, 2.3, 63.9, 20.7]], [0, 1, 2]
        ),
        AnnotatedImage(
            "clip1/000000.png", 40, 30, [[1, 2, 11, 12], [20, 5, 40, 30]], [1, 1], sequence="clip1", frame=0
        ),
        AnnotatedImage("clip1/000001.png", 40, 30, [[2, 2, 12, 12]], [2], sequence="clip1", frame=1),
        AnnotatedImage("empty.png", 32, 32),
    ]
    val = [AnnotatedImage("b.png", 50, 50, [[10.5, 10.5, 20.5, 30.5], [0, 0, 50, 50]], [2, 0])]
    return {"train": DetectionSet(folder, LABELS, train), "val": DetectionSet(folder, LABELS, val)}


def boxes_by_image(splits: dict[str, DetectionSet]) -> dict[tuple[str, str], list[tuple[str, np.ndarray]]]:
    """What must survive a conversion: per (split, image name), each box with its class name, in order."""
    return {
        (split, image_name(image.file)): [
            (dataset.labels[c], box) for box, c in zip(image.boxes, image.classes, strict=True)
        ]
        for split, dataset in splits.items()
        for image in dataset.images
    }


def assert_same_boxes(got: dict[str, DetectionSet], expected: dict[str, DetectionSet], tolerance: float) -> None:
    got_boxes, expected_boxes = boxes_by_image(got), boxes_by_image(expected)
    assert got_boxes.keys() == expected_boxes.keys()
    for key, expected_rows in expected_boxes.items():
        assert [name for name, _ in got_boxes[key]] == [name for name, _ in expected_rows], key
        for (_, got_box), (_, expected_box) in zip(got_boxes[key], expected_rows, strict=True):
            np.testing.assert_allclose(got_box, expected_box, rtol=0, atol=tolerance, err_msg=str(key))


@pytest.fixture
def native(tmp_path: Path) -> Path:
    return write_dataset(source_splits(tmp_path / "source"), tmp_path / "native", "coco")


def test_round_trip_coco_yolo_voc_coco_keeps_every_box_class_and_image(native: Path, tmp_path: Path) -> None:
    original = read_dataset(native)
    yolo = read_dataset(write_dataset(original, tmp_path / "yolo", "yolo"))
    voc = read_dataset(write_dataset(yolo, tmp_path / "voc", "voc"))
    back = read_dataset(write_dataset(voc, tmp_path / "coco", "coco"))
    for converted in (yolo, voc, back):
        assert {split: dataset.labels for split, dataset in converted.items()} == {"train": LABELS, "val": LABELS}
        assert_same_boxes(converted, original, tolerance=1e-3)  # YOLO's normalised floats: 8 digits
    assert {(split, image_name(i.file)): (i.width, i.height) for split, d in back.items() for i in d.images} == {
        (split, image_name(i.file)): (i.width, i.height) for split, d in original.items() for i in d.images
    }
    assert check_splits(back).ok


def test_coco_and_voc_round_trips_are_exact_and_keep_sequences(native: Path, tmp_path: Path) -> None:
    original = read_dataset(native)
    back = read_dataset(
        write_dataset(read_dataset(write_dataset(original, tmp_path / "voc", "voc")), tmp_path / "coco", "coco")
    )
    assert_same_boxes(back, original, tolerance=1e-6)
    frames = {image_name(image.file): (image.sequence, image.frame) for image in back["train"].images}
    assert frames["clip1/000000.png"] == ("clip1", 0) and frames["clip1/000001.png"] == ("clip1", 1)
    assert frames["a.png"] == (None, None)


def test_files_are_written_in_each_formats_own_conventions(native: Path, tmp_path: Path) -> None:
    document = json.loads((native / "train" / "annotations.json").read_text())
    assert [c["id"] for c in document["categories"]] == [1, 2, 3]
    first = next(a for a in document["annotations"] if a["image_id"] == 1)
    assert first["bbox"] == [0, 0, 10, 10] and first["category_id"] == 1  # [x, y, w, h], ids 1-based
    assert document["images"][0]["file_name"] == "images/a.png"

    write_dataset(read_dataset(native), tmp_path / "yolo", "yolo")
    config = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert config["names"] == {0: "car", 1: "person", 2: "bike"} and config["val"] == "images/val"
    line = (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().splitlines()[0]
    assert line.split() == ["0", "0.078125", "0.10416667", "0.15625", "0.20833333"]
    assert (tmp_path / "yolo" / "labels" / "train" / "empty.txt").read_text() == ""  # a background frame

    write_dataset(read_dataset(native), tmp_path / "voc", "voc")
    box = ElementTree.parse(tmp_path / "voc" / "Annotations" / "a.xml").getroot().find("object/bndbox")
    assert [box.findtext(tag) for tag in ("xmin", "ymin", "xmax", "ymax")] == ["1", "1", "10", "10"]  # 1-based
    assert (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").read_text() == "b\n"


def test_crowd_regions_are_kept_out_of_the_boxes_but_counted(tmp_path: Path) -> None:
    make_image(tmp_path / "x.png", 20, 20)
    coco = {
        "images": [{"id": 7, "file_name": "x.png", "width": 20, "height": 20, "license": 3}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 4, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 4, "bbox": [0, 0, 20, 20], "iscrowd": 1},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 4, "name": "cat"}],
        "info": {"year": 2024},
    }
    (tmp_path / "x.json").write_text(json.dumps(coco))
    dataset = read_dataset(tmp_path / "x.json")["train"]
    assert dataset.labels == ["cat", "dog"]  # categories in id order
    assert dataset.images[0].boxes.tolist() == [[1, 1, 6, 6]] and dataset.images[0].classes.tolist() == [0]
    report = check_dataset(dataset)
    assert report.counts["crowd_region"] == 1 and report.ok


@pytest.mark.parametrize(
    "layout, expected", [("native", "coco"), ("json", "coco"), ("yolo", "yolo"), ("yaml", "yolo"), ("voc", "voc")]
)
def test_the_format_is_told_from_the_path(native: Path, tmp_path: Path, layout: str, expected: str) -> None:
    if layout in ("yolo", "yaml", "voc"):
        write_dataset(read_dataset(native), tmp_path / layout, expected)
    path = {
        "native": native,
        "json": native / "val" / "annotations.json",
        "yolo": tmp_path / "yolo",
        "yaml": tmp_path / "yaml" / "data.yaml",
        "voc": tmp_path / "voc",
    }[layout]
    assert detect_format(path) == expected


def voc_folder(tmp_path: Path, old: str = "", new: str = "") -> Path:
    """A one-image VOC folder, its XML edited by replacing `old` with `new`."""
    make_image(tmp_path / "src" / "v.png", 20, 20)
    image = AnnotatedImage("v.png", 20, 20, [[1, 1, 5, 5]], [1])
    root = write_dataset({"train": DetectionSet(tmp_path / "src", LABELS, [image])}, tmp_path / "voc", "voc")
    xml = root / "Annotations" / "v.xml"
    xml.write_text(xml.read_text().replace(old, new) if old else xml.read_text())
    return root


def voc_without_bndbox(tmp_path: Path) -> Path:
    root = voc_folder(tmp_path)
    xml = root / "Annotations" / "v.xml"
    text = xml.read_text()
    xml.write_text(text[: text.index("<bndbox>")] + text[text.index("</bndbox>") + len("</bndbox>") :])
    return root


def yolo_folder(tmp_path: Path, lines: str, data_yaml: str = "train: images/train\nnames: [car, person]\n") -> Path:
    make_image(tmp_path / "yolo" / "images" / "train" / "x.png", 20, 20)
    (tmp_path / "yolo" / "labels" / "train").mkdir(parents=True)
    (tmp_path / "yolo" / "labels" / "train" / "x.txt").write_text(lines)
    (tmp_path / "yolo" / "data.yaml").write_text(data_yaml)
    return tmp_path / "yolo"


def coco_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bad.json").write_text(text)
    return tmp_path / "bad.json"


def coco_annotation(**annotation: object) -> str:
    return json.dumps(
        {
            "images": [{"id": 1, "file_name": "x.png", "width": 4, "height": 4}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"image_id": 1, **annotation}],
        }
    )


# case: (how to make the bad dataset in a folder, what the error message must name)
BAD_FILES = {
    "corrupt JSON": (lambda tmp: coco_file(tmp, '{"images": [\n  {"id": 1,,}]}'), ["bad.json", "line 2"]),
    "COCO unknown category": (
        lambda tmp: coco_file(tmp, coco_annotation(category_id=2, bbox=[0, 0, 1, 1])),
        ["bad.json", "annotations[0]", "category_id 2"],
    ),
    "COCO bbox of 3 numbers": (
        lambda tmp: coco_file(tmp, coco_annotation(category_id=1, bbox=[0, 0, 1])),
        ["bad.json", "annotations[0]", "bbox"],
    ),
    "YOLO line with 4 fields": (
        lambda tmp: yolo_folder(tmp, "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n"),
        ["x.txt:2", "5 fields"],
    ),
    "YOLO unknown class id": (lambda tmp: yolo_folder(tmp, "\n2 0.5 0.5 0.2 0.2\n"), ["x.txt:2", "class 2"]),
    "YOLO non-numeric value": (lambda tmp: yolo_folder(tmp, "0 0.5 abc 0.2 0.2\n"), ["x.txt:1", "'abc'"]),
    "YOLO bad data.yaml": (
        lambda tmp: yolo_folder(tmp, "", "train: images/train\nnames: [a\n"),
        ["data.yaml", "line 3"],
    ),
    "VOC object without bndbox": (voc_without_bndbox, ["v.xml", "<object> 1 (person)", "<bndbox>"]),
    "VOC bad XML": (lambda tmp: voc_folder(tmp, "</annotation>", ""), ["v.xml", "line"]),
    "VOC unknown class name": (
        lambda tmp: voc_folder(tmp, "<name>person</name>", "<name>horse</name>"),
        ["v.xml", "'horse'"],
    ),
    "VOC non-numeric corner": (lambda tmp: voc_folder(tmp, "<xmin>2</xmin>", "<xmin>two</xmin>"), ["v.xml", "<xmin>"]),
    "missing dataset": (lambda tmp: tmp / "nowhere", ["nowhere", "does not exist"]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_are_dataset_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    make_bad, fragments = BAD_FILES[case]
    with pytest.raises(DatasetError) as raised:
        read_dataset(make_bad(tmp_path))
    for fragment in fragments:
        assert fragment in raised.value.message, raised.value.message
    assert raised.value.fix


def test_a_relative_yolo_path_finds_its_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yolo_folder(tmp_path, "1 0.5 0.5 0.5 0.25\n")
    monkeypatch.chdir(tmp_path / "yolo")  # `images/train/x.png` has no `/images/` until made absolute
    image = read_dataset(Path("data.yaml"))["train"].images[0]
    assert image.boxes.tolist() == [[5, 7.5, 15, 12.5]] and image.classes.tolist() == [1]


def test_a_lenient_read_keeps_unknown_classes_and_broken_images_for_check(tmp_path: Path) -> None:
    yolo = yolo_folder(tmp_path / "y", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    (yolo / "images" / "train" / "broken.png").write_bytes(b"\x89PNG truncated")
    voc = voc_folder(tmp_path / "v", "<name>person</name>", "<name>horse</name>")
    (voc / "JPEGImages" / "v.png").unlink()
    yolo_report = check_splits(read_dataset(yolo, strict=False))
    voc_report = check_splits(read_dataset(voc, strict=False))
    assert (yolo_report.counts["unknown_class"], yolo_report.counts["unreadable_image"]) == (1, 1)
    assert yolo_report.examples["unreadable_image"] == ["train/broken.png"]
    assert (voc_report.counts["unknown_class"], voc_report.counts["missing_image"]) == (1, 1)


def test_a_failed_write_leaves_no_half_written_dataset(tmp_path: Path) -> None:
    splits = source_splits(tmp_path / "source")
    (tmp_path / "source" / "b.png").unlink()  # the val split's only image
    for data_format in ("coco", "yolo", "voc"):
        with pytest.raises(DatasetError, match="b.png does not exist"):
            write_dataset(splits, tmp_path / data_format, data_format)
        assert not (tmp_path / data_format).exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(DatasetError, match="not empty"):
        write_dataset(splits, tmp_path / "taken", "coco")


def problem_dataset(folder: Path) -> DetectionSet:
    """One or two of every problem kind, each in its own image file."""
    for name in ("good.png", "outside.png", "zero.png", "dup.png", "unknown.png", "mismatch.png", "background.png"):
        make_image(folder / name, 40, 30)
    (folder / "corrupt.png").write_bytes(b"not a png at all")
    images = [
        AnnotatedImage(
            "good.png", 40, 30, [[0, 0, 40, 30], [5, 5, 9, 9]], [0, 1], crowd_boxes=[[0, 0, 9, 9]], crowd_classes=[1]
        ),
        AnnotatedImage("outside.png", 40, 30, [[-5, 2, 20, 10], [30, 5, 40.4, 30.3]], [0, 0]),  # 2nd: in tolerance
        AnnotatedImage("zero.png", 40, 30, [[5, 5, 5, 10], [10, 10, 8, 12], [1, 1, 3, 3]], [2, 2, 2]),
        AnnotatedImage("dup.png", 40, 30, [[2, 2, 20, 20], [2, 2, 20, 20.1], [2, 2, 20, 20]], [0, 0, 1]),
        AnnotatedImage("unknown.png", 40, 30, [[1, 1, 5, 5]], [5]),
        AnnotatedImage("missing.png", 40, 30, [[1, 1, 5, 5]], [0]),
        AnnotatedImage("corrupt.png", 40, 30, [[1, 1, 5, 5]], [0]),
        AnnotatedImage("mismatch.png", 80, 60, [[1, 1, 5, 5]], [0]),
        AnnotatedImage("background.png", 40, 30),
    ]
    return DetectionSet(folder, LABELS, images)


def test_check_counts_every_problem_kind_with_examples(tmp_path: Path) -> None:
    report = check_dataset(problem_dataset(tmp_path))
    assert report.counts == {
        "missing_image": 1,
        "unreadable_image": 1,
        "size_mismatch": 1,
        "unknown_class": 1,
        "box_outside_image": 1,
        "zero_area_box": 2,
        "duplicate_box": 1,
        "image_without_boxes": 1,
        "crowd_region": 1,
    }
    assert report.examples["zero_area_box"] == ["zero.png"] and report.examples["missing_image"] == ["missing.png"]
    assert not report.ok and (report.images, report.boxes) == (9, 14)


def test_background_frames_and_crowds_are_info_not_errors(native: Path) -> None:
    report = check_splits(read_dataset(native))
    assert report.ok and report.counts["image_without_boxes"] == 1
    assert report.examples["image_without_boxes"] == ["train/images/empty.png"]


def test_clean_clips_and_drops_the_broken_boxes(tmp_path: Path) -> None:
    cleaned = clean_dataset(problem_dataset(tmp_path))
    assert cleaned.changes == {
        "dropped_images": 3,
        "dropped_unknown_class": 1,
        "clipped": 1,
        "dropped_zero_area": 2,
        "dropped_duplicate": 1,
    }
    by_file = {image.file: image for image in cleaned.dataset.images}
    assert by_file["outside.png"].boxes.tolist() == [[0, 2, 20, 10], [30, 5, 40, 30]]
    assert by_file["dup.png"].classes.tolist() == [0, 1] and len(by_file["zero.png"].boxes) == 1
    assert check_dataset(cleaned.dataset).ok


@settings(max_examples=25, deadline=None)
@given(st.integers(8, 4000), st.integers(8, 3000), st.lists(st.tuples(*[st.floats(0, 1)] * 4), max_size=6))
def test_any_box_survives_yolo_and_voc(width: int, height: int, corners: list[tuple[float, ...]]) -> None:
    boxes = [[min(a, c) * width, min(b, d) * height, max(a, c) * width, max(b, d) * height] for a, b, c, d in corners]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        Image.new("L", (width, height)).save(root / "x.png")
        original = {
            "train": DetectionSet(root, ["a"], [AnnotatedImage("x.png", width, height, boxes, [0] * len(boxes))])
        }
        voc = read_dataset(write_dataset(original, root / "voc", "voc"))
        assert_same_boxes(voc, original, tolerance=1e-6)
        yolo = read_dataset(write_dataset(original, root / "yolo", "yolo"))
        assert_same_boxes(yolo, original, tolerance=1e-3)


def test_cli_data_check_exits_1_on_a_bad_dataset_and_0_on_a_good_one(
    native: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["data", "check", str(native)])
    assert good.exit_code == 0, good.output
    assert "duplicate_box" in good.output and "5 images, 8 boxes" in good.output

    bad_source = problem_dataset(tmp_path / "bad_source")
    bad_source.images = [image for image in bad_source.images if image.file in ("outside.png", "dup.png", "good.png")]
    bad = write_dataset({"train": bad_source}, tmp_path / "bad", "coco")
    result = runner.invoke(app, ["data", "check", str(bad)])
    assert result.exit_code == 1 and isinstance(result.exception, DatasetError)
    assert "train/images/outside.png" in result.stdout and "pass --clean OUT" in result.exception.fix

    # Through the real entry point: the table, then `error:` and `fix:` lines, and exit code 1.
    assert main(["data", "check", str(bad)]) == 1
    printed = capsys.readouterr()
    assert "train/images/dup.png" in printed.out
    assert printed.err.splitlines() == [
        f"error: {bad} has problems: box_outside_image 1, duplicate_box 1",
        "  fix: fix the files, or pass --clean OUT to write a cleaned copy to train on",
    ]
    assert main(["data", "check", str(native)]) == 0

    report = json.loads(runner.invoke(app, ["data", "check", str(bad), "--json"]).stdout)
    assert report["ok"] is False and report["problems"]["duplicate_box"]["count"] == 1

    cleaned = runner.invoke(app, ["data", "check", str(bad), "--clean", str(tmp_path / "cleaned")])
    assert cleaned.exit_code == 0 and "dropped duplicate 1" in cleaned.output
    assert runner.invoke(app, ["data", "check", str(tmp_path / "cleaned")]).exit_code == 0


def test_cli_data_convert_and_its_errors(native: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    converted = CliRunner().invoke(app, ["data", "convert", str(native), str(tmp_path / "y"), "--to", "yolo"])
    assert converted.exit_code == 0, converted.output
    assert "train 4 images 6 boxes" in converted.stdout and "video sequence" in converted.stderr
    assert read_dataset(tmp_path / "y")["val"].box_count == 2

    (native / "val" / "annotations.json").write_text("{oops")
    assert main(["data", "check", str(native)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "val/annotations.json: line 1" in error and "Traceback" not in error
    assert main(["data", "convert", str(native), str(tmp_path / "z"), "--to", "tfrecord"]) == 1
    assert "unknown dataset format 'tfrecord'" in capsys.readouterr().err
