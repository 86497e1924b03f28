"""``allnet-train --help``: every option of every command has a help text and shows its default;
no source-code markup reaches the user."""
from __future__ import annotations

import argparse

import pytest

from allnet_training.cli import build_parser

PARSER = build_parser()
COMMANDS = PARSER._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_its_default(command: str) -> None:
    parser = COMMANDS[command]
    text = parser.format_help()
    assert "``" not in text and "``" not in PARSER.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings}: no help text"
        has_default = not (action.default is None or action.default is False or action.required)
        if has_default:
            help_line = parser._get_formatter()._get_help_string(action)
            assert "default" in help_line, f"{command} {action.option_strings}: default not shown"


def test_synthetic_flair_lesion_range_must_keep_lesions_brighter_than_white_matter(capsys) -> None:
    from allnet_training.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["crossval", "--dev-data", "missing", "--out", "unused", "--synth-flair-lesion", "0.9", "2"])
    assert exit_info.value.code == 2
    assert "--synth-flair-lesion: flair_lesion 0.9 2: need 1 < low <= high" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.1", "3"])
def test_noise_target_out_of_range_is_a_usage_error_before_any_data_loads(capsys, value) -> None:
    from allnet_training.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dev-data", "missing", "--out", "unused", "--noise-target", value])
    assert exit_info.value.code == 2
    assert "--noise-target: setting noise_target must be a number from 0 to 1.0" in capsys.readouterr().err
