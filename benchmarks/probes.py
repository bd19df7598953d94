"""Rerun issue 25's probe list through the command line, each in its own process, and count
tracebacks, silent ignores and wrong messages (0 of each expected).

Every probe runs ``python -m segshift.cli ...`` (or, for a full disk, ``segshift.cli.main``
under a monkeypatch that makes writes fail with ENOSPC) on tiny synthcity data (8 scenes of
64x80) and 2-4 step trainings, and checks the exit status and what it printed: a traceback
anywhere is a traceback; a probe of the "silent" section that does not say what it found is a
silent ignore; any other miss is a wrong message. Writes ``benchmarks/results/probes.md``.

    python -m benchmarks.probes            # about 10-15 minutes on 2 busy CPU cores
    python -m benchmarks.probes --only eval  # the probes whose name contains "eval"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import write_result

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = [
    "data.num_workers=0",
    "data.streams.labeled.crop_size=[64,80]",
    "train.iters=2",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "train.progress=plain",
    "schedule.warmup_iters=0",
]
FULL_DISK = """
import errno, sys
import {module} as target
def fail(*args, **kwargs):
    {raise_}
target.{name} = fail
from segshift.cli import main
sys.exit(main(sys.argv[1:]))
"""
NO_SPACE = "raise OSError(errno.ENOSPC, 'No space left on device')"
TORCH_POS = "raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 64')"


@dataclass
class Probe:
    """One probe: ``section`` (traceback / silent / message / own data), the command's words
    (after ``segshift``), the exit status and texts it must give, and an extra check."""

    name: str
    section: str
    args: list[str]
    rc: int
    says: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    check: Callable[[], bool] | None = None
    patch: tuple[str, str, str] | None = None  # (module, attribute, raise statement)


def run(args: list[str], patch: tuple[str, str, str] | None = None) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "SEGSHIFT_THREADS": "1"}
    if patch is None:
        command = [sys.executable, "-m", "segshift.cli", *args]
    else:
        module, name, raise_ = patch
        script = FULL_DISK.format(module=module, name=name, raise_=raise_)
        command = [sys.executable, "-c", script, *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def prepare(tmp: Path) -> dict[str, Path]:
    """Synthcity data, a trained run, a CycleGAN run and the bad inputs the probes use."""
    p = {"sim": tmp / "sim", "photo": tmp / "photo", "runs": tmp / "runs"}
    for style in ("sim", "photo"):
        out = ["--out", str(p[style]), "--style", style, "--n", "8", "--size", "64x80"]
        assert run(["data", "synthcity", *out])[0] == 0
    # the probe run is validated on CARLA-like masks (the class id in R of an RGB file)
    carla = p["carla"] = Path(shutil.copytree(p["photo"], tmp / "carla"))
    for mask in (carla / "masks").glob("*.png"):
        ids_ = np.array(Image.open(mask))
        Image.fromarray(np.stack([ids_, ids_ * 0 + 9, ids_ * 0 + 99], -1)).save(mask)
    roots = [f"data.streams.labeled.root={p['sim']}", f"data.val.root={carla}"]
    train = ["train", "demo/source_only", *roots, f"output_dir={p['runs']}", *TINY]
    val = "data.val.options={mask_format: channel}"
    assert run([*train, val, "name=run", "train.iters=4"])[0] == 0, "training the run failed"
    p["run"] = p["runs"] / "run"
    gan = ["translate", "train", "translate/synthcity", f"data.streams.source.root={p['sim']}"]
    gan += [f"data.streams.target.root={p['photo']}", f"output_dir={p['runs']}", "name=gan"]
    gan += ["train.iters=1", "data.num_workers=0", "method.params.ngf=4", "method.params.ndf=4"]
    gan += ["method.params.n_blocks=1", "train.progress=plain"]
    gan += [f"data.streams.{s}.crop_size=[32,32]" for s in ("source", "target")]
    assert run(gan)[0] == 0, "training the probe CycleGAN run failed"
    # a copy of sim with a 1x1 image, camvid ids 50 / 200 / 16-bit 259, a too-short mask
    bad = p["bad"] = Path(shutil.copytree(p["sim"], tmp / "bad"))
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(bad / "images" / "tiny.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(bad / "masks" / "tiny.png")
    masks = sorted((bad / "masks").glob("sim_*.png"))
    for path, value in zip(masks, (50, 200, 259), strict=False):
        mask = np.array(Image.open(path)).astype(np.uint16 if value > 255 else np.uint8)
        mask[:3] = value
        Image.fromarray(mask).save(path)
    ids = p["ids"] = Path(shutil.copytree(bad, tmp / "ids"))
    for name in ("images/tiny.png", "masks/tiny.png"):
        (ids / name).unlink()
    short = p["short"] = Path(shutil.copytree(p["sim"], tmp / "short"))
    Image.fromarray(np.array(Image.open(short / "masks" / "sim_000001.png"))[:-2]).save(
        short / "masks" / "sim_000001.png"
    )
    corrupt = p["corrupt"] = Path(shutil.copytree(p["photo"], tmp / "corrupt"))
    (corrupt / "images" / "photo_000003.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp / "a_file").write_text("not a directory\n")
    import torch  # noqa: PLC0415 - only the pickle probe needs it

    class Code:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"state_dict": {}, "x": Code()}, tmp / "evil.pth")
    # KITTI-like parts sharing names
    testing = shutil.copytree(p["sim"], tmp / "testing")  # the same file names as sim
    plain = tmp / "plain"
    plain.mkdir()
    shutil.copy(p["photo"] / "images" / "sim_000000.png", plain / "frame.png")
    (tmp / "kitti.yaml").write_text(
        json.dumps(
            {
                "data": {
                    "streams": {
                        "target": {"root": str(p["sim"]), "labeled": False,
                                   "concat": [{"root": str(testing)}, {"root": str(plain)}]}
                    },
                    "val": {"root": str(p["photo"])},
                }
            }
        )
    )  # fmt: skip
    (tmp / "my_uda.yaml").write_text("base: own/uda\nname: mine\ntrain: {iters: 3}\n")
    (tmp / "my_dacs.yaml").write_text("base: my_uda.yaml\nname: mine_dacs\n")
    return p


def pipeline_args(tmp: Path, p: dict[str, Path], *extra: str) -> list[str]:
    roots = [f"data.streams.source.root={p['sim']}", f"data.streams.target.root={p['photo']}"]
    stream = ["crop_size=[64,80]", "batch_size=2"]
    sized = [f"data.streams.{s}.{o}" for s in ("source", "target") for o in stream]
    tiny = ["train.iters=2", "train.eval_every=2", "train.ckpt_every=2", "data.num_workers=0"]
    return ["pipeline", "pipeline/demo", *roots, f"data.val.root={p['photo']}", *sized, *tiny,
            "pipeline.overrides=[]", "pipeline.student.overrides=[]", f"output_dir={tmp}/pipes",
            "train.progress=plain", *extra]  # fmt: skip


def probes(tmp: Path, p: dict[str, Path]) -> list[Probe]:
    run_dir, photo, sim = str(p["run"]), str(p["photo"]), str(p["sim"])
    train = ["train", "demo/source_only", f"data.val.root={photo}", f"output_dir={tmp}/runs", *TINY]
    on_sim = [*train, f"data.streams.labeled.root={sim}"]
    pl = ["pseudo-label", "--checkpoint", run_dir, "--data", photo, "--workers", "0"]
    images = sorted(str(x) for x in (p["photo"] / "images").iterdir())[:2]
    return [
        Probe("full disk: checkpoint write (torch.save)", "traceback", [*on_sim, "name=disk1"], 2,
              ("is the disk full?",), patch=("segshift.engine.checkpoint", "torch.save", TORCH_POS)),
        Probe("full disk: lock of a new run", "traceback", [*on_sim, "name=disk2"], 2,
              ("cannot lock", "No space left"), patch=("segshift.fileio", "os.pwrite", NO_SPACE)),
        Probe("full disk: lock on --resume", "traceback", ["train", "--resume", run_dir], 2,
              ("cannot lock",), patch=("segshift.fileio", "os.pwrite", NO_SPACE)),
        Probe("1x1 image: data check", "traceback", ["data", "check", str(p["bad"])], 1,
              ("too small:", "tiny.png: image 1x1")),
        Probe("1x1 image: train", "traceback", [*train, f"data.streams.labeled.root={p['bad']}",
              "data.streams.labeled.scale_range=[0.5,0.9]", "name=tiny"], 2, ("tiny.png",)),
        Probe("eval --out an existing file", "traceback", ["eval", run_dir, "--out",
              str(tmp / "a_file")], 2, ("exists and is not a directory",)),
        Probe("pseudo-label --batch-size 0", "traceback", [*pl, "--out", f"{tmp}/pl0",
              "--batch-size", "0"], 2, ("--batch-size: must be >= 1",)),
        Probe("pseudo-label --checkpoint a CycleGAN run", "traceback", ["pseudo-label",
              "--checkpoint", str(p["runs"] / "gan"), "--data", photo, "--out", f"{tmp}/pl1"], 2,
              ("not a segmentation run",)),
        Probe("pseudo-label --data with a corrupt PNG", "traceback", ["pseudo-label",
              "--checkpoint", run_dir, "--data", str(p["corrupt"]), "--out", f"{tmp}/pl2",
              "--workers", "0"], 2, ("photo_000003.png: cannot read image",)),
        Probe("eval.subset=nosuch", "silent", ["eval", run_dir, "eval.subset=nosuch"], 2,
              ("eval.subset: 'nosuch' is not a class subset",)),
        Probe("camvid masks with ids 50, 200, 259", "silent", ["data", "check", str(p["ids"])], 0,
              ("(read as 255): 50 in 1 file(s)", "(read as 255): 200", "(read as 255): 259")),
        Probe("crop larger than every image", "silent", [*on_sim, "name=crop",
              "data.streams.labeled.crop_size=[128,160]", "train.iters=1"], 0,
              ("WARNING: data.streams.labeled.crop_size [128, 160] is larger than every image",)),
        Probe("pipeline: pseudo_label.threshold=7", "silent", pipeline_args(tmp, p,
              "pipeline.pseudo_label.threshold=7"), 2, ("pipeline.pseudo_label.threshold",),
              ("=== teacher",)),
        Probe("pipeline: student.real_share=[1.5]", "silent", pipeline_args(tmp, p,
              "pipeline.student.real_share=[1.5]"), 2, ("pipeline.student.real_share",),
              ("=== teacher",)),
        Probe("pipeline: teacher.config=uda/nosuch", "silent", pipeline_args(tmp, p,
              "pipeline.teacher.config=uda/nosuch"), 2, ("pipeline.teacher (uda/nosuch)",),
              ("=== baseline",)),
        Probe("pipeline: a full run (for the next probes)", "own data", pipeline_args(tmp, p,
              "name=loop"), 0, ("over the same",)),
        Probe("pipeline: a copied directory reuses its stages", "silent", pipeline_args(tmp, p,
              "name=copy"), 0, ("teacher: done, cached", "student_1: done, cached"),
              ("=== ", "config changed")),
        Probe("resume with model.arch changed", "message", ["train", "--resume", run_dir,
              "model.arch=unet"], 2, ("model.arch: 'fast' -> 'unet'",), ("state_dict",)),
        Probe("eval CFG --checkpoint X data.val.root=...", "message", ["eval", "demo/source_only",
              "--checkpoint", run_dir, f"data.val.root={photo}", "--out", f"{tmp}/ev"], 0,
              ("===> mIoU",)),
        Probe("predict a.png --checkpoint C --out D b.png", "message", ["predict", images[0],
              "--checkpoint", run_dir, "--out", f"{tmp}/pred", images[1]], 0,
              ("predictions of 2 images",)),
        Probe("model.encoder_weights=evil.pth", "message", [*on_sim, "name=evil",
              f"model.encoder_weights={tmp}/evil.pth"], 2, ("possibly code", "convert it"),
              ("weights_only` argument", "add_safe_globals")),
        Probe("data.val.root=<a file>", "message", ["eval", run_dir,
              f"data.val.root={tmp}/a_file"], 2, ("is not a directory",)),
        Probe("masks of another size: options.fit_masks", "own data", ["data", "check",
              str(p["short"]), "options.fit_masks=true"], 0, ("1 mask(s) resized",)),
        Probe("predict --masks read as data.val (channel)", "own data", ["predict", images[0],
              "--checkpoint", run_dir, "--out", f"{tmp}/pred2", "--masks",
              str(p["carla"] / "masks")], 0, ("as data.val reads its masks",)),
        Probe("parts sharing names: data check", "own data", ["data", "check",
              str(tmp / "kitti.yaml")], 0, ("shared names: 8 sample name(s)",)),
        Probe("parts sharing names: pseudo-label", "own data", ["pseudo-label", "--checkpoint",
              run_dir, "--data", str(tmp / "kitti.yaml"), "--out", f"{tmp}/pl3", "--workers",
              "0"], 0, ("17 images",)),
        Probe("own config chain on own/uda", "own data", ["config", str(tmp / "my_dacs.yaml")], 0,
              ("name: mine_dacs", "iters: 3")),
        Probe("concat part inherits n_labeled: said", "own data", [*train, "name=nl",
              f"data.streams.labeled.root={sim}", "data.streams.labeled.n_labeled=4",
              f"data.streams.labeled.concat=[{{root: {photo}}}]", "train.iters=1"], 0,
              ("reads the stream's n_labeled=4",)),
        Probe("eval RUN_DIR says which checkpoint", "own data", ["eval", run_dir, "--out",
              f"{tmp}/ev2"], 0, ("scored", "best.pt (step"),
              check=lambda: "step" in json.loads(Path(f"{tmp}/ev2/metrics.json").read_text())),
        Probe("pseudo-label --labels CONFIG", "own data", [*pl, "--out", f"{tmp}/pl4",
              "--labels", str(p["run"] / "config.yaml")], 0, ("against ground truth",)),
        Probe("pipeline.pseudo_label.labels: PATH", "own data", ["config", "pipeline/demo",
              f"pipeline.pseudo_label.labels={photo}"], 0, (f"labels: {photo}",)),
        Probe("segshift config pipeline/demo", "own data", ["config", "pipeline/demo"], 0,
              ("teacher:",)),
        Probe("own/uda template's source-only command", "own data", ["train", "own/uda",
              "method.name=supervised", "method.params.stream=source", "data.streams.target=null",
              f"data.streams.source.root={sim}", f"data.val.root={photo}",
              f"output_dir={tmp}/runs", "name=own", "train.iters=1", "train.eval_every=0",
              "data.num_workers=0", "data.streams.source.crop_size=[64,80]"], 0, (),
              ("WARNING",)),
    ]  # fmt: skip


def verdict(probe: Probe, rc: int, output: str) -> str:
    if "Traceback (most recent call last)" in output:
        return "TRACEBACK"
    ok = rc == probe.rc and all(s in output for s in probe.says)
    ok = ok and not any(s in output for s in probe.never)
    ok = ok and (probe.check is None or probe.check())
    if ok:
        return "ok"
    return "SILENT" if probe.section == "silent" else "WRONG"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run the probes whose name contains this")
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="probes_"))
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = prepare(tmp)
    rows, counts = [], {"TRACEBACK": 0, "SILENT": 0, "WRONG": 0, "ok": 0}
    for probe in probes(tmp, paths):
        if args.only and args.only not in probe.name:
            continue
        if probe.name.startswith("pipeline: a copied"):
            shutil.copytree(tmp / "pipes" / "loop", tmp / "pipes" / "copy", dirs_exist_ok=True)
        rc, output, seconds = run(probe.args, probe.patch)
        result = verdict(probe, rc, output)
        counts[result] += 1
        last = " ".join(output.strip().splitlines()[-1:])[:160].replace("|", "/")
        rows.append(
            f"| {probe.section} | {probe.name} | {rc} | {result} | {seconds:.0f} | {last} |"
        )
        print(rows[-1], flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    body = "\n".join(
        [
            f"{len(rows)} probes in {time.perf_counter() - start:.0f} s: {counts['TRACEBACK']} "
            f"tracebacks, {counts['SILENT']} silent ignores, {counts['WRONG']} wrong messages, "
            f"{counts['ok']} ok.",
            "",
            "| section | probe | exit | result | s | last line |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    write_result("probes", "Issue 25 probes through the command line", body)
    sys.exit(1 if counts["ok"] != len(rows) else 0)


if __name__ == "__main__":
    main()
