"""Settings come in groups by concern, each setting with one user-facing name; each stage takes only the groups it
names; a flat dict, as deployments made before the groups hold, still runs, mapped with a warning."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from flows.ingest import ingest_feed, ingest_feeds, pipeline_stages
from tasks.models import FlatSettingsWarning, IngestReport, Settings
from tasks.models.settings import GROUP_OF
from tasks.stages import STAGES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer


def test_every_setting_has_one_group_and_a_name_no_other_uses() -> None:
    names = [name for group in Settings.model_fields.values() for name in group.annotation.model_fields]  # type: ignore[union-attr]
    assert len(names) == len(set(names)) == len(GROUP_OF) > 40
    assert not set(names) & set(Settings.model_fields)  # no setting is named like a group


def test_settings_given_by_name_land_in_their_groups_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = Settings.of(model="bundled:base", newest=3, openai_attempts=2, output_dir="out")
    assert settings.transcribe.model == "bundled:base" and settings.selection.newest == 3
    assert settings.openai.openai_attempts == 2 and settings.output.output_dir == Path("out")
    assert settings.get("newest") == 3 and settings.flat()["model"] == "bundled:base"
    assert settings.but(newest=4).selection.newest == 4 and settings.selection.newest == 3
    with pytest.raises(ValueError, match="no_such_setting"):
        Settings.of(no_such_setting=1)


def test_a_flat_dict_is_mapped_into_the_groups_with_a_warning_naming_each_setting() -> None:
    with pytest.warns(FlatSettingsWarning, match=r"transcribe\.beam_size, selection\.newest"):
        settings = Settings.model_validate({"beam_size": 2, "newest": 1, "transcribe": {"model": "bundled:base"}})
    assert settings.transcribe.beam_size == 2 and settings.transcribe.model == "bundled:base"
    assert settings.selection.newest == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the grouped form, as the settings' own JSON: no warning
        assert Settings.model_validate_json(settings.model_dump_json()) == settings


def test_each_stage_is_given_only_the_settings_groups_it_names(settings: Settings) -> None:
    stages = {stage.name: stage for stage in pipeline_stages(settings, set(), {})}
    given = {name: set(stage.parameters(None, {})) - {"job", *STAGES[name].takes} for name, stage in stages.items()}  # type: ignore[arg-type]
    assert given["download"] == {"download", "network"}
    assert given["transcribe"] == {"settings"}  # the transcriber chosen decides which groups it reads
    assert stages["download"].parameters(None, {})["network"] is settings.network  # type: ignore[arg-type]


def test_the_prefect_servers_parameter_check_lets_a_flat_dict_through_and_refuses_a_wrong_group() -> None:
    # The check `prefect deployment run` meets on the server, before any podflow code runs.
    schema = parameter_schema(ingest_feeds).model_dump()
    check = functools.partial(validate, schema=schema, raise_on_error=True, preprocess=True, ignore_required=True)
    assert check({"settings": {"output_dir": "podcasts", "model": "bundled:base"}}) == []
    assert check({"settings": {"output": {"output_dir": "podcasts"}, "transcribe": {"model": "bundled:base"}}}) == []
    with pytest.raises(ValidationError):
        check({"settings": {"transcribe": {"output_dir": "podcasts"}}})


@pytest.mark.usefixtures("prefect_api")
def test_a_deployments_flat_settings_still_run_the_flow(server: FeedServer, tmp_path: Path) -> None:
    feed_url = server.add("/feed.xml", rss([rss_item("Gone", guid="gone", enclosure="gone.mp3")]))
    flat = {"output_dir": str(tmp_path / "out"), "allowed_networks": ["127.0.0.1/32"], "download_attempts": 1}
    with pytest.warns(FlatSettingsWarning, match="output.output_dir"):
        state = ingest_feed(feed_url, flat, return_state=True)  # type: ignore[arg-type]  # as Prefect passes it
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport), state
    [episode] = report.episodes
    assert episode.status == "failed" and "404" in (episode.error or "")  # tried once, into the flat output_dir
    assert server.count("/gone.mp3") == 1 and list((tmp_path / "out").glob("*/ledger.sqlite"))
