"""The README's "Your own dataset" walkthrough, run exactly as written: every `segshift` line of
the block marked ``<!-- walkthrough: ... -->``, in order, in an empty working directory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from segshift.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- walkthrough:"


def walkthrough_commands() -> list[list[str]]:
    """The argument lists of the ``segshift`` lines of the marked bash block (comments cut)."""
    text = README.read_text()
    assert MARKER in text, "the README lost its walkthrough marker"
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words[1:] for words in commands if words and words[0] == "segshift"]


def test_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys) -> None:
    commands = walkthrough_commands()
    verbs = [c[0] for c in commands]
    assert verbs == ["data", "data", "init", "data", "train", "eval", "predict"]
    monkeypatch.chdir(tmp_path)
    for args in commands:
        assert main(args) == 0, f"`segshift {shlex.join(args)}` failed"
        out = capsys.readouterr().out
        if args[:2] == ["data", "check"]:
            assert "no problems: 2 set(s), 22 images" in out
        if args[0] == "eval":
            assert "mIoU" in out
    run = tmp_path / "runs" / "own_supervised"
    assert (run / "export" / "model.safetensors").is_file()
    assert [r["step"] for r in map(json.loads, (run / "log.jsonl").open()) if "step" in r][-1] == 20
    masks = sorted((tmp_path / "my_preds" / "masks").glob("*.png"))
    assert len(masks) == 6
    classes = json.loads((tmp_path / "my_preds" / "legend.json").read_text())["classes"]
    with Image.open(masks[0]) as mask:  # index masks in train ids of the 11 classes
        assert len(classes) == 11 and mask.size == (80, 64)
        assert int(np.asarray(mask).max()) < 11
