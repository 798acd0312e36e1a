"""The simcast command line: help lists every command, errors are one line with exit code 1."""

from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def _commands(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, path + (name,))


def test_help_of_every_command_and_subcommand():
    import typer.main

    paths = list(_commands(typer.main.get_command(app)))
    assert ("forecast",) in paths and ("catalog", "show") in paths and ("synth", "taxibj") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0 and result.exception is None, (path, result.output)
        assert "Usage:" in result.output, path


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("ingest", "info", "demo", "catalog", "synth"):
        assert cmd in result.output
    sub = runner.invoke(app, ["catalog", "--help"])
    assert "list" in sub.output and "show" in sub.output


def test_catalog_list_and_show():
    result = runner.invoke(app, ["catalog", "list"])
    assert result.exit_code == 0 and "era5-uk-t2m" in result.output and "nybike" in result.output
    show = runner.invoke(app, ["catalog", "show", "taxibj"])
    assert show.exit_code == 0 and "BJ1[3-6]_M32x32_T30_InOut.h5" in show.output


def test_unknown_entry_is_one_clear_line():
    result = runner.invoke(app, ["ingest", "no-such-set"])
    assert result.exit_code == 2  # a wrong name is a usage error
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no data set named 'no-such-set'" in lines[0]


def test_ingest_bundled_sample_then_noop_then_info(tmp_path):
    first = runner.invoke(app, ["ingest", "nybike", "--json"])
    assert first.exit_code == 0, first.output
    assert '"time_steps": 4320' in first.output and '"skipped": false' in first.output
    second = runner.invoke(app, ["ingest", "nybike"])
    assert "is current, nothing to do" in second.output
    info = runner.invoke(app, ["info", str(tmp_path / "stores/nybike.zarr")])
    assert info.exit_code == 0 and "4320" in info.output and "provenance" in info.output
    missing = runner.invoke(app, ["info", str(tmp_path / "nothing.zarr")])
    assert missing.exit_code == 1 and "does not exist; run `simcast ingest` first" in missing.output


def test_synth_commands_write_real_layouts(tmp_path):
    r = runner.invoke(app, ["synth", "weatherbench", "--out", str(tmp_path / "wb"), "--start", "2010-01-01",
                            "--end", "2010-01-02"])
    assert r.exit_code == 0 and (tmp_path / "wb/2m_temperature/2m_temperature_2010_5.625deg.nc").is_file()
    r = runner.invoke(app, ["synth", "taxibj", "--out", str(tmp_path / "bj"), "--rows", "8", "--cols", "8"])
    assert r.exit_code == 0 and (tmp_path / "bj/BJ16_M8x8_T30_InOut.h5").is_file()


def test_simcast_bounds_openmp_spinning_before_torch_loads_unless_told_otherwise():
    import os
    import subprocess
    import sys

    code = "import pipelines, os, sys; print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def spin(**extra):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                             check=True)
        return out.stdout.split()

    assert spin() == ["10000", "False"]  # set first: torch, loaded by the stages, reads it
    assert spin(GOMP_SPINCOUNT="500")[0] == "500"
    assert spin(OMP_WAIT_POLICY="ACTIVE")[0] == "None"
