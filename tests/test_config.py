from pathlib import Path

import pytest

from segshift.config import load_config, resolve_config_path, save_config, to_dataclass
from segshift.errors import ConfigError
from segshift.methods.supervised import SupervisedParams


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    write(tmp_path / "base.yaml", "train: {iters: 10, log_every: 5}\nmodel: {encoder: resnet34}\n")
    return write(
        tmp_path / "run.yaml",
        "base: base.yaml\nname: x\ntrain: {iters: 20}\n"
        "data:\n  streams:\n    labeled: {name: folder, root: /d, batch_size: 4}\n",
    )


def test_base_file_then_overrides(config_file: Path) -> None:
    cfg = load_config(config_file, ["model.encoder=resnet18", "optim.lr=0.5"])
    assert cfg.train.iters == 20  # the file wins over its base
    assert cfg.train.log_every == 5  # inherited from the base
    assert cfg.model.encoder == "resnet18"  # the command line wins over both
    assert cfg.optim.lr == 0.5
    assert cfg.data.streams.labeled.batch_size == 4
    assert cfg.data.streams.labeled.crop_size is None  # schema default filled in


def test_unknown_key_names_path_and_suggests(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.itres.*did you mean 'iters'"):
        load_config(config_file, ["train.itres=3"])
    with pytest.raises(ConfigError, match=r"data\.streams\.labeled\.batchsize.*'batch_size'"):
        load_config(config_file, ["data.streams.labeled.batchsize=3"])


def test_typo_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "optim: {lr: 0.1, momentun: 0.9}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.momentun.*'momentum'"):
        load_config(path)


def test_wrong_type_names_key(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.iters"):
        load_config(config_file, ["train.iters=many"])


def test_override_without_equals(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(config_file, ["train.iters"])


def test_bases_chain_and_a_cycle_is_refused(tmp_path: Path) -> None:
    """c -> b -> a: each file's keys win over its base's; a -> c closing the loop is an error."""
    write(tmp_path / "a.yaml", "name: a\nseed: 3\ntrain: {iters: 7}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nname: b\nseed: 4\n")
    path = write(tmp_path / "c.yaml", "base: b.yaml\nname: c\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.seed, cfg.train.iters) == ("c", 4, 7)
    write(tmp_path / "a.yaml", "base: c.yaml\nname: a\n")
    with pytest.raises(ConfigError, match=r"'base:' makes a cycle: .*c\.yaml -> .*b\.yaml"):
        load_config(path)


def test_missing_file_and_packaged_names() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/config.yaml")
    assert resolve_config_path("demo/source_only").name == "source_only.yaml"
    cfg = load_config("demo/oracle")
    assert cfg.name == "oracle" and cfg.model.arch == "fast"


def test_method_params_are_checked() -> None:
    params = to_dataclass({"ohem": True, "ohem_thresh": 0.5}, SupervisedParams, "method.params")
    assert params.ohem and params.ohem_thresh == 0.5
    with pytest.raises(ConfigError, match=r"method\.params\.ohem_tresh.*'ohem_thresh'"):
        to_dataclass({"ohem_tresh": 0.5}, SupervisedParams, "method.params")
    with pytest.raises(ConfigError, match=r"method\.params\.ohem"):
        to_dataclass({"ohem": "sometimes"}, SupervisedParams, "method.params")


def test_saved_config_round_trips(config_file: Path, tmp_path: Path) -> None:
    cfg = load_config(config_file)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg


def test_config_diff_names_changed_keys(config_file: Path) -> None:
    from segshift.config import config_diff

    a = load_config(config_file)
    b = load_config(config_file, ["optim.lr=0.5", "data.streams.labeled.hflip=true"])
    assert config_diff(a, b) == ["data.streams.labeled.hflip", "optim.lr"]
    assert config_diff(a, a) == []
