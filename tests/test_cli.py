"""The `maq` entry point itself: `--version` and shell completion."""

from importlib.metadata import version

import pytest

from pipeline.cli import main


def test_version_prints_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"maq {version('maq-hub')}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_knows_every_command_and_option(capsys, shell):
    with pytest.raises(SystemExit) as exit_:
        main(["--print-completion", shell])
    assert exit_.value.code == 0
    script = capsys.readouterr().out
    for word in ("data", "hub", "sweep", "evaluate", "push", "pull", "collect", "--revision", "--jobs"):
        assert word in script, f"{shell} completion lacks {word}"


def test_an_unknown_shell_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--print-completion", "ksh"])
    assert exit_.value.code == 2
    assert "invalid choice: 'ksh'" in capsys.readouterr().err
