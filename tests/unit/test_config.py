"""The typed config: profiles, files, --set, unknown keys and bad values, and ``recipe-embed config``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import ConfigError, PipelineConfig, load_config, parse_set
from pipelines.profiles import PROFILE_CHOICES, PROFILES

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_resolves(name: str) -> None:
    cfg = load_config(name)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.profile == name


def test_default_profile_is_the_seed_scale() -> None:
    cfg = load_config()
    assert (cfg.synthesis.n_train, cfg.synthesis.n_eval) == (60_323, 6_703)
    assert cfg.training.matryoshka_dims == (384, 256, 128, 64)
    assert cfg.training.learning_rate == 2e-5


def test_smoke_profile_is_tiny_and_overrides_only_what_it_names() -> None:
    smoke, default = load_config("smoke"), load_config("default")
    assert smoke.synthesis.n_train < 1_000 and smoke.synthesis.n_eval < 1_000
    assert smoke.registry == default.registry  # untouched sections keep the defaults


def test_config_is_frozen() -> None:
    cfg = load_config("smoke")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        cfg.synthesis.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"bogus": 1},  # top level
        {"synthesis": {"bogus": 1}},  # a section
        {"training": {"learning_rat": 1e-4}},  # a near miss
        {"paths": {"data_dir": "x", "extra": True}},
    ],
)
def test_unknown_keys_are_rejected_at_every_level(overrides: dict) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("default", overrides=overrides)


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["training.epochs=0"], "training.epochs"),
        (["synthesis.n_train=-5"], "synthesis.n_train"),
        (["training.matryoshka_dims=[64, 128]"], "training.matryoshka_dims"),
        (["synthesis.intent_weights={quick_recipes: -1}"], "synthesis.intent_weights"),
        (["synthesis.intent_weights={made_up: 1}"], "synthesis.intent_weights"),
        (["validation.max_reject_fraction=2"], "validation.max_reject_fraction"),
        (["registry.primary_dim=100"], "primary_dim"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(sets: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("default", sets=sets)
    msg = str(info.value)
    assert "\n" not in msg
    assert key in msg


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope")


def test_parse_set_types_and_nesting() -> None:
    assert parse_set(["a.b=2", "a.c=0.5", "d=true", "e=[1, 2]", "f=text", "g="]) == {
        "a": {"b": 2, "c": 0.5},
        "d": True,
        "e": [1, 2],
        "f": "text",
        "g": "",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["no-equals-sign"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["=3"])


def test_set_overrides_file_overrides_profile(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("profile: smoke\nsynthesis:\n  seed: 5\n  n_eval: 50\n")
    cfg = load_config(file=f, sets=["synthesis.seed=9"])
    assert cfg.profile == "smoke"  # taken from the file
    assert cfg.synthesis.seed == 9  # --set wins over the file
    assert cfg.synthesis.n_eval == 50  # the file wins over the profile
    assert cfg.synthesis.n_train == PROFILES["smoke"]["synthesis"]["n_train"]


def test_flow_entry_point_and_recipe_embed_pick_the_same_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config FILE`` with a ``profile`` key: both commands run that profile; ``--profile`` wins over it."""
    import flows.train_and_evaluate as fte

    f = tmp_path / "c.yaml"
    f.write_text("profile: smoke\nsynthesis:\n  seed: 5\n")
    seen: list[dict] = []

    def fake_flow(**kwargs: object) -> dict:
        seen.append(kwargs)
        raise RuntimeError("stop before running")

    monkeypatch.setattr(fte, "train_and_evaluate", fake_flow)
    assert fte.main(["--config", str(f), "--set", "training.epochs=2"]) == 1
    assert fte.main(["--config", str(f), "--profile", "cpu"]) == 1
    assert [(k["profile"], k["overrides"]) for k in seen] == [
        ("smoke", {"synthesis": {"seed": 5}, "training": {"epochs": 2}}),
        ("cpu", {"synthesis": {"seed": 5}}),
    ]
    for args, profile in (([], "smoke"), (["--profile", "cpu"], "cpu")):
        result = runner.invoke(app, ["config", "--config", str(f), *args])
        assert result.output.strip() == f"config ok: profile {profile}"


def test_profile_names_come_from_one_list(capsys: pytest.CaptureFixture[str]) -> None:
    import flows.train_and_evaluate as fte

    assert ("auto", *PROFILES) == PROFILE_CHOICES
    schema = fte.train_and_evaluate.parameters.model_dump()["properties"]["profile"]
    assert tuple(schema["enum"]) == PROFILE_CHOICES  # the Prefect UI's dropdown
    with pytest.raises(SystemExit) as exc:
        fte.parse_args(["--profile", "nope"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and all(name in err for name in PROFILE_CHOICES)
    result = runner.invoke(app, ["config", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert "[" + "|".join(PROFILE_CHOICES) + "]" in result.output
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    documented = next(line for line in readme.split("\n\n") if line.startswith("Profiles:"))
    assert all(f"`{name}`" in documented for name in PROFILE_CHOICES)
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    flow_params = next(part for part in operations.split("\n\n") if part.startswith("Flow parameters"))
    assert all(f"`{name}`" in flow_params for name in PROFILE_CHOICES)


def test_toml_and_json_files(tmp_path: Path) -> None:
    t = tmp_path / "c.toml"
    t.write_text("[training]\nepochs = 3\n\n[model]\nmax_seq_length = 64\n")
    cfg = load_config("smoke", file=t)
    assert (cfg.training.epochs, cfg.model.max_seq_length) == (3, 64)
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"synthesis": {"seed": 11}}))
    assert load_config(file=j).synthesis.seed == 11


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("c.ini", "[x]", "unsupported config format"),
        ("c.yaml", "synthesis: [1, 2\n", "not valid yaml"),
        ("c.toml", "training = [", "not valid toml"),
        ("c.yaml", "- 1\n- 2\n", "top level must be a mapping"),
        ("c.yaml", "synthesis:\n  sed: 3\n", "synthesis.sed: unknown key"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(file=f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(file=tmp_path / "absent.yaml")


def test_cli_config_show_prints_the_resolved_config() -> None:
    result = runner.invoke(app, ["config", "--show", "--profile", "smoke", "--set", "synthesis.seed=77"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown == load_config("smoke", sets=["synthesis.seed=77"]).model_dump(mode="json")


@pytest.mark.parametrize(
    "args",
    [
        ["config", "--set", "training.bogus=1"],
        ["config", "--set", "training.epochs=-1"],
        ["config", "--profile", "nope"],
    ],
)
def test_cli_config_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("recipe-embed: error:")
    assert "Traceback" not in result.output


def test_console_script_exit_code_on_bad_key() -> None:
    """The installed entry point itself (not the test runner) exits 2 with one stderr line."""
    proc = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", "config", "--set", "nope.x=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope: unknown key" in proc.stderr
