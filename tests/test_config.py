"""Settings from flags, PODFLOW_* variables and podflow.toml, through the real `podflow` command line; sizes and
times in human units; help in panels."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows import cli
from flows.cli import app
from flows.config import commented_config, environment_variable, setting_fields
from tasks.models import Settings
from tasks.models.settings import GROUP_OF
from tasks.models.units import human_bytes, human_seconds, parse_bytes, parse_seconds

runner = CliRunner()


@pytest.fixture
def ingest_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Settings]:
    """The Settings each `podflow ingest` run here would use, the run itself left out; in a folder of its own, so
    no podflow.toml but the test's is found."""
    given: list[Settings] = []
    monkeypatch.setattr(cli, "run", lambda feed_urls, opml, settings, *display: given.append(settings) or 0)
    monkeypatch.chdir(tmp_path)
    return given


def test_a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default(
    ingest_settings: list[Settings], tmp_path: Path
) -> None:
    (tmp_path / "podflow.toml").write_text(
        'newest = 5\nmodel = "bundled:base"\n[download]\ndownload_workers = 3\nmax_episode_bytes = "1 GiB"\n'
    )
    env = {"PODFLOW_NEWEST": "4", "PODFLOW_DOWNLOAD_WORKERS": "2", "PODFLOW_OUTPUT": str(tmp_path / "env-out")}

    result = runner.invoke(app, ["ingest", "http://127.0.0.1:9/f.xml", "--newest", "1"], env=env)

    assert result.exit_code == 0, result.output
    [settings] = ingest_settings
    assert settings.selection.newest == 1  # flag over environment over file
    assert settings.download.download_workers == 2  # environment over file
    assert settings.transcribe.model == "bundled:base"  # file over default
    assert settings.download.max_episode_bytes == 2**30  # a size in the file's words
    assert settings.output.output_dir == tmp_path / "env-out"  # --output is PODFLOW_OUTPUT
    assert settings.metadata.metadata_workers == Settings().metadata.metadata_workers  # nowhere: the default


def test_config_show_says_where_each_value_came_from_and_reads_back_as_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("[transcribe]\nbeam_size = 2\n")
    env = {
        "PODFLOW_CONFIG": str(config),
        "PODFLOW_ALLOW_NETWORK": "10.0.0.0/8, 192.168.0.0/16",
        "PODFLOW_OPENAI_BASE_URL": "https://user:hunter2secret@llm.example/v1",
        "OPENAI_API_KEY": "sk-test-0123456789abcdef",
    }

    result = runner.invoke(app, ["config", "show"], env=env)

    assert result.exit_code == 0, result.output
    lines = {line.split(" = ")[0]: line for line in result.output.splitlines() if " = " in line}
    assert lines["beam_size"].endswith(f"# {config} [transcribe]")
    assert lines["allowed_networks"].endswith("# PODFLOW_ALLOW_NETWORK")
    assert lines["download_workers"].endswith("# default")
    assert "hunter2secret" not in result.output and "0123456789ab" not in result.output  # secrets masked
    assert "OPENAI_API_KEY (environment): set, ending 'cdef'" in result.output
    shown = tomllib.loads(result.output)  # what it prints is a config file: it reads back to the same settings
    flat = {name: value for group in shown.values() for name, value in group.items()}
    assert Settings.of(**flat).transcribe.beam_size == 2
    assert [str(network) for network in Settings.of(**flat).network.allowed_networks] == [
        "10.0.0.0/8",
        "192.168.0.0/16",
    ]


@pytest.mark.parametrize(
    ("env", "toml", "args", "message"),
    [
        ({"PODFLOW_NEWEST": "many"}, None, [], "PODFLOW_NEWEST (environment): Input should be a valid integer"),
        ({"PODFLOW_NEWST": "1"}, None, [], "environment: no setting 'PODFLOW_NEWST' (did you mean 'PODFLOW_NEWEST'?)"),
        ({}, "beam_size = 0\n", [], "podflow.toml: beam_size: Input should be greater than 0"),
        ({}, "[download]\nmodel = 'x'\n", [], "podflow.toml [download]: no setting 'model'"),
        ({}, "newest = \n", [], "podflow.toml: Invalid value"),
        ({}, "max_episode_bytes = 'lots'\n", [], "'lots' is not understood: write a number or e.g. 20 MiB"),
        ({}, None, ["--config", "missing.toml"], "--config: no file 'missing.toml'"),
        ({}, None, ["--max-download-s", "2 fortnights"], "--max-download-s: Value error, '2 fortnights'"),
    ],
)
def test_a_bad_value_in_any_source_is_one_error_naming_it(
    ingest_settings: list[Settings],
    tmp_path: Path,
    env: dict[str, str],
    toml: str | None,
    args: list[str],
    message: str,
) -> None:
    if toml is not None:
        (tmp_path / "podflow.toml").write_text(toml)
    # A port nothing listens on: were the settings accepted, the (left out) run would be the only thing to notice.
    result = runner.invoke(app, ["ingest", "http://127.0.0.1:9/f.xml", *args], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert ingest_settings == []  # refused before anything ran


def test_config_init_writes_every_setting_commented_out_at_its_default(tmp_path: Path) -> None:
    path = tmp_path / "podflow.toml"
    assert runner.invoke(app, ["config", "init", str(path)]).exit_code == 0
    written = path.read_text()
    assert tomllib.loads(written) == {group: {} for group in Settings.model_fields}  # it changes nothing
    assert all(f"# {name} =" in written for name in GROUP_OF)
    # Every line uncommented where it has a value: the defaults, read back through the file's own syntax.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line and "(none" not in line else line
        for line in written.splitlines()
    )
    flat = {name: value for group in tomllib.loads(uncommented).values() for name, value in group.items()}
    assert set(flat) == {name for name, field in setting_fields().items() if field.default is not None}
    assert Settings.of(**flat) == Settings()
    assert runner.invoke(app, ["config", "init", str(path)]).exit_code == 2  # never replaced unasked
    assert commented_config() == written


def test_each_setting_has_the_environment_variable_of_its_option() -> None:
    assert environment_variable("transcribe_workers") == "PODFLOW_TRANSCRIBE_WORKERS"
    assert environment_variable("output_dir") == "PODFLOW_OUTPUT"
    assert environment_variable("allowed_networks") == "PODFLOW_ALLOW_NETWORK"
    assert len({environment_variable(name) for name in GROUP_OF}) == len(GROUP_OF)


@pytest.mark.parametrize(
    ("text", "size"), [("20 MiB", 20 * 2**20), ("2GiB", 2**31), ("1.5 kb", 1500), ("512", 512), ("3 B", 3)]
)
def test_sizes_are_read_in_human_units(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("3 h", 10800), ("20 min", 1200), ("1.5s", 1.5), ("90", 90)])
def test_times_are_read_in_human_units(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "MiB", "2 parsecs", "-1 s", "1e9"])
def test_a_text_that_is_no_amount_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not understood"):
        parse_seconds(bad)


def test_sizes_and_times_print_in_the_largest_whole_unit() -> None:
    assert [human_bytes(n) for n in (20 * 2**20, 2 * 2**30, 1536, 100)] == ["20 MiB", "2 GiB", "1.5 KiB", "100 B"]
    assert [human_seconds(s) for s in (10800, 1800, 30, 5400, 0.5)] == ["3 h", "30 min", "30 s", "90 min", "0.5 s"]


def test_help_groups_options_by_settings_group_with_the_common_ones_first() -> None:
    result = runner.invoke(app, ["ingest", "-h"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    text = result.output
    headings = [line.rstrip(":") for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings[:3] == ["Arguments", "Common options", "Which episodes"]
    assert {"Transcription", "Download", "Network", "Metadata"} <= set(headings)
    common = text[text.index("Common options:") : text.index("Which episodes:")]
    assert all(option in common for option in ("--output", "--model", "--language", "--newest", "--config"))
    assert "[default: 20 MiB]" in text and "[default: 3 h]" in text and "20971520" not in text
    assert "<list[str]>" not in text and "FEED_URL" in text
    examples = text[text.index("Examples:") :].splitlines()[1:]
    assert sum(1 for line in examples if line.strip().startswith("podflow ingest") or " podflow ingest " in line) == 4


def test_version_and_short_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("podflow ") and version.output.strip() != "podflow"
    assert runner.invoke(app, ["-h"]).output == runner.invoke(app, ["--help"]).output
