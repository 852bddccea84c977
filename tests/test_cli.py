"""The ``hfnet`` console script: dispatch, help, errors, and ``hfnet complexity``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from hfnet_core import __version__
from hfnet_core.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["--help"]) == 0


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "complexity" in err


def test_every_command_target_resolves():
    import importlib

    for name, (target, help_) in COMMANDS.items():
        module_name, func_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:  # a subcommand whose module another part of the project owns
            pytest.skip(f"{name}: {e}")
        assert callable(getattr(module, func_name)), name
        assert help_


def test_complexity_table_one(capsys):
    assert main(["complexity"]) == 0
    out = capsys.readouterr().out
    base = next(line for line in out.splitlines() if line.startswith("Baseline "))
    assert "10.47M" in base and "32.73G" in base and "*" not in base
    hf10 = next(line for line in out.splitlines() if line.startswith("Baseline+10HF "))
    assert "10.59M" in hf10 and "33.07G" in hf10 and "*" not in hf10
    assert "degenerate" in out


def test_complexity_json_other_setting(capsys):
    assert main(["complexity", "--json", "--frames", "2", "--size", "64", "--width", "0.25", "--classes", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in rows][0] == "Baseline" and len(rows) == 5
    assert rows[0]["params_match"] is None  # not the paper's setting: no verdict


def test_complexity_one_model(capsys, tmp_path):
    assert main(["complexity", "--model", "hf_tsn_bninception_demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hf_tsn_bninception_demo:") and "8 frames at 112 px" in out
    assert main(["complexity", "--model", "tsn_bninception_demo", "--json", "--frames", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops"]["num_frames"] == 4 and data["params"]["hf"] == 0
    # a checkpoint file counts what it contains
    from hfnet_core.checkpoint import save_checkpoint
    from hfnet_core.model import build_model

    path = save_checkpoint(tmp_path / "m.safetensors", build_model("hf_tsn_bninception_demo", num_classes=2), ["a", "b"])
    assert main(["complexity", "--model", str(path)]) == 0
    assert "8 frames at 112 px" in capsys.readouterr().out


def test_complexity_bad_model(capsys):
    assert main(["complexity", "--model", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_console_script_installed():
    exe = shutil.which("hfnet") or str(__import__("pathlib").Path(sys.executable).with_name("hfnet"))
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "complexity" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "hfnet_core.cli", "frobnicate"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
