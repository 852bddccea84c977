"""The promises of SECURITY.md, end to end: bounded resources for every hostile file of issue 10 (peak RSS
measured in a separate process), no code run from a resume state, one clear error and nothing lost when
a resume state is corrupt or the disk fills mid-run, and uploads decoded from a private temporary folder.

(Other promises are proven where their code is tested: see SECURITY.md for the list.)"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hfnet_core.atomic import WriteError
from hfnet_core.cli import main as hfnet_main
from hfnet_core.config import dump_toml
from hfnet_core.errors import CheckpointError
from hfnet_core.train import STATE_FILE, load_state, train

from _hostile_files import build_corpus, tmpfs, zip_bomb
from _train_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
RSS_LIMIT = 1.5e9  # issue 10: no file under 10 MB takes any process past 1.5 GB before it is refused
FILE_LIMIT = 10 * 2**20


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    env.pop("HFNET_MAX_MODEL_BYTES", None)
    return env


def _measured(args: list[str], timeout: int = 300) -> dict:
    """Run ``args`` in a child process; its exit code, output and peak RSS (RUSAGE_CHILDREN of a wrapper
    that runs nothing else, so no earlier child counts)."""
    wrapper = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, "
               "text=True); print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr, "
               "'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))")
    r = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=timeout,
                       env=_env(), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- bounded resources ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_hostile_file_is_refused_within_the_memory_target(tmp_path):
    """Each file of issue 10 is loaded in one child process with its peak RSS reset before each file: each
    ends in one HfnetError naming the problem, below 1.5 GB; the real checkpoint among them loads."""
    res = _measured([sys.executable, str(TESTS / "_hostile_files.py"), str(tmp_path / "corpus")], timeout=600)
    assert res["rc"] == 0, res["err"][-3000:]
    rows = json.loads(res["out"])
    assert len(rows) >= 20
    for row in rows:
        assert row["bytes"] < FILE_LIMIT, row
        if row["file"] == "valid":
            assert row["outcome"] == "loaded", row
            continue
        assert not row["outcome"].startswith("BUG") and row["outcome"] != "loaded", row
        assert row["expected"] in row["message"] and row["message"].startswith(row["path"] + ": "), row
        assert row["peak_rss_bytes"] < RSS_LIMIT, row
    assert res["rss"] < RSS_LIMIT


@pytest.mark.slow
def test_convert_cli_on_hostile_files_exits_2_with_one_line(tmp_path):
    corpus = build_corpus(tmp_path / "c")
    for name in ("trn_40_segments_pth", "stride0_classifier", "zip_bomb_4gb"):  # the rest: the test above
        path, phrase = corpus[name]
        out = tmp_path / f"{name}.out.safetensors"
        res = _measured([sys.executable, "-m", "hfnet_core.cli", "convert", str(path), str(out)])
        assert res["rc"] == 2 and res["err"].count("\n") == 1, (name, res["err"])
        assert phrase in res["err"] and "Traceback" not in res["err"], (name, res["err"])
        assert res["rss"] < RSS_LIMIT and not out.exists(), (name, res["rss"])


def test_plain_torch_load_of_the_bomb_really_inflates(tmp_path):
    """The zip bomb is a real one: torch.load on its own allocates what the central directory declares
    (shown here with a 256 MB one; the 4 GB one of the corpus goes the same way)."""
    bomb = zip_bomb(tmp_path / "b.pth", 256 * 2**20)
    code = ("import resource, torch\n"
            "def rss():\n"
            "    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
            "before = rss()\n"
            "t = torch.load(%r, weights_only=True)\n"
            "print(rss() - before)" % str(bomb))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 200 * 2**20, r.stdout  # the 256 MiB tensor is resident


# --- resume state: no code, one clear error, nothing lost ------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished epoch of a tiny run (copied per test)."""
    out = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(out, train={"epochs": 1, "max_steps_per_epoch": 1}))
    return out


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _corrupt_state(run: Path, kind: str, tmp: Path) -> str:
    state = run / STATE_FILE
    data = state.read_bytes()
    if kind == "truncated":
        state.write_bytes(data[: len(data) // 2])
        return "is not a readable training state"
    if kind == "empty":
        state.write_bytes(b"")
        return "is empty"
    if kind == "random":
        state.write_bytes(os.urandom(4096))
        return "is not a readable training state"
    if kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, state)
        return "not an hfnet training state"
    if kind == "fields":
        s = load_state(state)
        s["epoch"], s["history"] = "one", None
        torch.save(s, state)
        return "epoch is str; history is missing"
    if kind == "wrong_model":
        s = load_state(state)
        s["model"] = {k: torch.zeros(1) for k in s["model"]}
        torch.save(s, state)
        return "does not fit this run"
    if kind == "zip_bomb":
        zip_bomb(state, 256 * 2**20)
        return "zip bomb"
    if kind == "fifo":  # reading it would block forever; it must be refused from its stat
        state.unlink()
        os.mkfifo(state)
        return "is a FIFO (named pipe), not a regular file"
    if kind == "code":
        torch.save({"format": "hfnet-train-state", "x": _Payload(str(tmp / "pwned"))}, state)
        return "would need to run code"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "foreign", "fields", "wrong_model", "zip_bomb",
                                  "fifo", "code"])
def test_corrupt_resume_state_is_one_clear_error_and_nothing_changes(finished_run, tmp_path, capsys, kind):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    cfg = tiny_config(run, train={"epochs": 2, "max_steps_per_epoch": 1})
    (tmp_path / "cfg.toml").write_text(dump_toml(cfg))
    expect = _corrupt_state(run, kind, tmp_path)
    before = _snapshot(run)
    assert hfnet_main(["train", str(tmp_path / "cfg.toml"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{run / STATE_FILE}:" in err and expect in err and "Restore last_state.pt from a backup" in err, err
    assert _snapshot(run) == before  # nothing lost: every file as it was, the corrupt one included
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError):
        train(cfg, resume=True)


def test_pretrained_truncated_safetensors_is_one_line(finished_run, tmp_path, capsys):
    data = (finished_run / "last.safetensors").read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    cfg = tiny_config(tmp_path / "run", train={"epochs": 1, "max_steps_per_epoch": 1})
    (tmp_path / "cfg.toml").write_text(dump_toml(cfg))
    assert hfnet_main(["train", str(tmp_path / "cfg.toml"), "--set", f"model.pretrained={json.dumps(str(bad))}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cut.safetensors" in err and "not a readable safetensors file" in err, err
    assert hfnet_main(["train", str(tmp_path / "cfg.toml"), "--set", 'model.pretrained="a\\u0000b"']) == 2
    assert "NUL byte" in capsys.readouterr().err


@pytest.fixture
def small_tmpfs(tmp_path):
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        yield mnt


def test_disk_full_mid_run_keeps_the_last_finished_epoch(small_tmpfs, capsys):
    """The disk fills during epoch 2's save: one WriteError naming last_state.pt, epoch 1's files intact,
    no temp file left; once space is freed, --resume continues from epoch 1 as if nothing happened."""
    run = small_tmpfs / "run"
    cfg = tiny_config(run, train={"epochs": 1, "max_steps_per_epoch": 1})
    train(cfg)
    before = _snapshot(run)
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(bytes(free - 400_000))  # room for the logs, not for the state (1.7 MB)
    cfg.train.epochs = 2
    with pytest.raises(WriteError) as e:
        train(cfg, resume=True)
    assert str(run / STATE_FILE) in str(e.value) and "no space left on device" in str(e.value)
    after = _snapshot(run)
    for name in (STATE_FILE, "last.safetensors", "best.safetensors"):
        assert after[name] == before[name], name
    assert not list(run.glob(".*.tmp"))
    assert load_state(run / STATE_FILE)["epoch"] == 1
    (small_tmpfs / "filler").unlink()
    result = train(cfg, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert load_state(run / STATE_FILE)["epoch"] == 2


def test_state_writer_reports_the_real_cause(tmp_path, monkeypatch):
    """torch's zip writer turns a failed write into 'unexpected pos'; the cause must survive it."""
    import errno

    from hfnet_core.atomic import torch_save_atomic

    real_open = open

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    import hfnet_core.atomic as atomic

    monkeypatch.setattr(atomic, "open", lambda p, mode="r", *a, **k: Full(real_open(p, mode, *a, **k))
                        if "w" in mode else real_open(p, mode, *a, **k), raising=False)
    (tmp_path / "s.pt").write_bytes(b"previous")
    with pytest.raises(WriteError, match="no space left on device"):
        torch_save_atomic(tmp_path / "s.pt", {"w": torch.zeros(10_000)})
    assert (tmp_path / "s.pt").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]


# --- uploads: decoded from a private temporary folder, removed afterwards ---------------------------------------


def test_uploads_are_written_only_to_a_private_temporary_folder(monkeypatch):
    state = pytest.importorskip("app.state")
    decode_upload = getattr(state, "_decode_upload", None)
    if decode_upload is None:
        pytest.skip("app.state no longer has _decode_upload; the app's own tests cover its upload path")
    import numpy as np

    seen = {}

    def fake_decode(path, name=None, **kwargs):
        p = Path(path)
        seen.update(path=p, mode=p.parent.stat().st_mode & 0o777, parent_entries=os.listdir(p.parent))
        return np.zeros((1, 8, 8, 3), np.uint8), 25.0

    class Upload:
        name = "../../etc/evil name.mp4"
        size = 10
        file_id = "x"

        def getvalue(self):
            return b"0123456789"

    monkeypatch.setattr(state, "decode_video", fake_decode)
    decode_upload(Upload())
    assert seen["mode"] == 0o700  # only this user may enter the folder
    assert seen["path"].name == "upload.mp4" and seen["parent_entries"] == ["upload.mp4"]  # never the user's name
    assert not seen["path"].parent.exists()  # removed right after decoding


def test_pickle_payload_in_a_state_never_runs(tmp_path):
    marker = tmp_path / "ran"
    state = tmp_path / STATE_FILE
    with open(state, "wb") as f:
        pickle.dump({"format": "hfnet-train-state", "x": _Payload(str(marker))}, f)
    with pytest.raises(CheckpointError, match="run code"):
        load_state(state)
    assert not marker.exists()
