"""The metadata model's ``retries`` (queued runs) and the config's ``[[schedule]]`` entries."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from registry.config import parse_config
from registry.core.model import Metadata
from registry.errors import ConfigError


@pytest.mark.parametrize(("retries", "kept"), [(0, False), (2, True), (10, True)])
def test_retries_is_optional_and_canonical(retries: int, kept: bool) -> None:
    meta = Metadata(id="p", name="P", retries=retries)
    written = json.loads(meta.to_json())
    assert ("retries" in written) is kept  # a procedure never retried keeps its file as it was
    assert Metadata.model_validate(written).retries == retries


@pytest.mark.parametrize("retries", [-1, 11, 1.5])
def test_retries_out_of_range_is_refused(retries: object) -> None:
    with pytest.raises(ValidationError, match="retries"):
        Metadata.model_validate({"id": "p", "name": "P", "retries": retries})


def test_schedule_entries_parse() -> None:
    config = parse_config(
        '[[schedule]]\nid = "report"\nspec = "^1"\ncron = "0 6 * * 1-5"\nargs = { n = 1 }\n'
        '[[schedule]]\nid = "tick"\ncron = "* * * * * */10"\n'
    )
    assert [(s.id, s.spec, s.cron, s.args) for s in config.schedule] == [
        ("report", "^1", "0 6 * * 1-5", {"n": 1}),
        ("tick", None, "* * * * * */10", {}),
    ]


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ('id = "x"\ncron = "every day"', "not a cron expression"),
        ('id = "Bad Id"\ncron = "* * * * *"', "schedule.0.id"),
        ('cron = "* * * * *"', "schedule.0.id"),
        ('id = "x"\ncron = "* * * * *"\nwhen = 1', "schedule.0.when"),
    ],
)
def test_a_bad_schedule_entry_names_the_field(entry: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        parse_config(f"[[schedule]]\n{entry}\n")
