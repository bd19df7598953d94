"""``segshift predict``: inputs sharing a stem get distinct outputs; none overwrites another."""

from __future__ import annotations

import shutil
from pathlib import Path

from segshift.cli import main
from segshift.engine.trainer import Trainer
from segshift.pipeline.predict import gather_images, output_names


def test_unique_stems_keep_their_names() -> None:
    assert output_names([Path("x/a.png"), Path("y/b.jpg")]) == ["a", "b"]


def test_same_stem_in_two_directories(tmp_path: Path) -> None:
    files = [tmp_path / "dup1" / "a.png", tmp_path / "dup2" / "a.png", tmp_path / "b.png"]
    assert output_names(files) == ["dup1_a", "dup2_a", "b"]


def test_same_stem_in_nested_directories(tmp_path: Path) -> None:
    files = [tmp_path / "a.png", tmp_path / "sub" / "deep" / "a.png"]
    assert output_names(files) == ["a", "sub_deep_a"]


def test_same_stem_other_suffix_and_a_taken_name(tmp_path: Path) -> None:
    files = [tmp_path / "a.png", tmp_path / "a.JPG", tmp_path / "a_png.png"]
    # a.png -> a_png, which the third input's stem also is: it becomes a_png_2
    assert output_names(files) == ["a_png", "a_jpg", "a_png_2"]


def test_a_file_given_twice_is_predicted_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    image = tmp_path / "d" / "a.png"
    image.write_bytes(b"")
    assert gather_images([image, tmp_path / "d", str(image)]) == [image]


def test_predict_same_stems_writes_every_output(
    tiny_config, tiny_folder: Path, tmp_path: Path, capsys
) -> None:
    trainer = Trainer(tiny_config("train.iters=1", "train.eval_every=0"))
    trainer.fit()
    source = tiny_folder / "images" / "img_000.png"
    inputs = []
    for sub in ("dup1", "dup2"):
        (tmp_path / sub).mkdir()
        inputs.append(shutil.copy(source, tmp_path / sub / "a.png"))
    out = tmp_path / "pred"
    code = main(
        ["predict", *map(str, inputs), "--checkpoint", str(trainer.run_dir), "--out", str(out)]
    )
    assert code == 0
    assert "wrote predictions of 2 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "dup1_a_color.png",
        "dup1_a_overlay.png",
        "dup2_a_color.png",
        "dup2_a_overlay.png",
        "legend.json",
        "legend.png",
        "masks",
    ]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["dup1_a.png", "dup2_a.png"]
