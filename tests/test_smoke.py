from click.testing import CliRunner

from orchestrator.cli import cli


def test_cli_shows_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Render storyboards" in result.output
