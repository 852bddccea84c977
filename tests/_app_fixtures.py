"""Fixture checkpoints for the explorer tests: random demo-shaped models saved in the real format.

``make_demo_dir(d)`` writes ``hf_tsn_demo.safetensors`` and ``tsn_demo.safetensors`` (width 0.25, 64 px,
8 frames, the 16 SynthSomething classes) plus a small ``<stem>.test.npz`` eval bundle for each, so the app
finds them exactly as it finds the shipped files. HF gate weights are randomised (they start at zero) so
gate maps are not blank. ``make_operator_dir(d)`` writes the other temporal operators the same way (GSM, TSM,
HF-TRN, a TSM+HF model with two operator kinds, a plain TSN: ``OPERATOR_MODELS``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES, SynthSomethingDataset
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.model import build_model, get_config
from hfnet_core.model_config import ModelConfig

SIZE = 64
FRAMES = 8


def make_model(name: str | ModelConfig, seed: int, size: int = SIZE):
    """A demo-shaped model with random gate weights (HF's gate convolutions, GSM's gate convolutions; GSM's
    gate BatchNorm keeps its identity init, TSM has nothing to draw)."""
    torch.manual_seed(seed)
    model = build_model(name, width_mult=0.25, input_size=size, num_segments=FRAMES,
                        num_classes=len(SYNTH_CLASSES)).eval()
    keep = {id(p) for _, _, m in model.operators("gsm") for p in m.bn.parameters()}
    with torch.no_grad():
        for p in model.gate_parameters():
            if id(p) not in keep:
                p.normal_(0.0, 0.05)
    return model


def make_bundle(model, path: Path, clips: int = 2) -> None:
    ds = SynthSomethingDataset("test", clips, num_frames=FRAMES, size=SIZE, seed=0)
    with torch.inference_mode():
        x = torch.stack([ds[i]["frames"] for i in range(len(ds))])
        out = model.inspect(x)
    EvalBundle(
        clip_ids=[ds.clip_id(i) for i in range(len(ds))],
        paths=[ds.clip_id(i) for i in range(len(ds))],
        labels=np.array([ds.label_of(i) for i in range(len(ds))]),
        logits=out.logits.numpy(),
        features=out.pooled_features.numpy(),
        class_names=list(SYNTH_CLASSES),
        metadata={"dataset": "synth", "split": "test", "synth_seed": 0, "synth_per_class": clips},
    ).save(path)


def make_demo_dir(d: Path, bundles: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for stem, name, seed in (("hf_tsn_demo", "hf_tsn_bninception_demo", 1), ("tsn_demo", "tsn_bninception_demo", 2)):
        model = make_model(name, seed)
        history = [{"epoch": e, "train_loss": 2.8 - 0.3 * e, "val_top1": 0.06 * e, "time_s": 1.0} for e in (1, 2)]
        training = {"config": {"optim": {"lr": 0.05, "schedule": "cosine", "gate_lr_mult": 0.1},
                               "train": {"batch_size": 16}, "data": {"dataset": "synth"}},
                    "epoch": 2, "epochs": 2, "metrics": history[-1], "history": history, "wall_time_s": 2.0,
                    "note": "random init (test fixture)"}
        save_checkpoint(d / f"{stem}.safetensors", model, list(SYNTH_CLASSES), training=training)
        if bundles:
            make_bundle(model, d / f"{stem}.test.npz")
    return d


def tsm_hf_config() -> ModelConfig:
    """TSM before every block and HF after it: a model with two operator kinds (Gate maps' selector)."""
    cfg = get_config("tsm_bninception_demo")
    return cfg.replace(name="", temporal=[*cfg.temporal, {"op": "hf", "where": "all", "args": {"conservative": True}}])


#: The operator fixtures: file stem -> (model, seed, with an eval bundle).
OPERATOR_MODELS = {
    "gsm_demo": ("gsm_bninception_demo", 3, True),
    "tsm_demo": ("tsm_bninception_demo", 4, True),
    "hf_trn_demo": ("hf_trn_bninception_demo", 5, False),
    "tsm_hf_demo": (None, 6, False),
    "tsn_demo": ("tsn_bninception_demo", 2, False),
}


def make_operator_dir(d: Path) -> Path:
    """GSM, TSM, HF-TRN, TSM+HF and a plain TSN (the demo files the lead ships later have these names)."""
    d.mkdir(parents=True, exist_ok=True)
    for stem, (name, seed, bundle) in OPERATOR_MODELS.items():
        model = make_model(name or tsm_hf_config(), seed)
        save_checkpoint(d / f"{stem}.safetensors", model, list(SYNTH_CLASSES), training={"note": "random init"})
        if bundle:
            make_bundle(model, d / f"{stem}.test.npz", clips=1)
    return d


def make_multitask_dir(d: Path, clips: int = 2) -> Path:
    """The demo pair plus ``mt_hf_tsn_demo``: a random multi-task HF-TSN on SynthSomething's verb / noun
    view (16 verbs = the motions, 6 nouns = shapes, 82 action classes), with its eval bundle and the
    metrics ``hfnet eval`` writes beside it."""
    import json

    from hfnet_core.data.synthetic import synth_task_spec
    from hfnet_core.evaluate import evaluate_model

    make_demo_dir(d)
    spec = synth_task_spec()
    torch.manual_seed(7)
    model = build_model("mt_hf_tsn_bninception_demo", width_mult=0.25, input_size=SIZE, num_segments=FRAMES,
                        num_classes=spec.num_outputs, consensus_args=spec.consensus_args()).eval()
    with torch.no_grad():
        for p in model.gate_parameters():
            p.normal_(0.0, 0.05)
    save_checkpoint(d / "mt_hf_tsn_demo.safetensors", model, spec.class_names(), training={"note": "random init"})
    ds = SynthSomethingDataset("test", clips, num_frames=FRAMES, size=SIZE, seed=0, view="verb_noun")
    metrics, bundle = evaluate_model(model, ds, metadata={"dataset": "synth", "split": "test", "synth_seed": 0,
                                                          "synth_per_class": clips})
    bundle.save(d / "mt_hf_tsn_demo.test.npz")
    (d / "mt_hf_tsn_demo.test.json").write_text(json.dumps(metrics))
    return d


def copy_demo_dir(src: Path, dst: Path) -> Path:
    """A writable copy of a fixture folder (copies, not symlinks: the app refuses links out of its roots)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    return make_demo_dir(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def multitask_dir(tmp_path_factory) -> Path:
    return make_multitask_dir(tmp_path_factory.mktemp("multitask"))


@pytest.fixture(scope="session")
def operator_dir(tmp_path_factory) -> Path:
    return make_operator_dir(tmp_path_factory.mktemp("operators"))


@pytest.fixture()
def operator_env(operator_dir, monkeypatch):
    """Point the app at the operator fixtures (GSM, TSM, HF-TRN, TSM+HF, TSN)."""
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(operator_dir))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    return operator_dir


@pytest.fixture()
def app_env(demo_dir, monkeypatch):
    """Point the app at the fixture checkpoints (samples stay the shipped ones)."""
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(demo_dir))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    return demo_dir


APP = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"


def new_app(timeout: float = 180) -> "AppTest":  # noqa: F821
    """An AppTest of the whole explorer (navigation + sidebar + default page), not yet run.

    Until ``switch_page`` is called, every run stays on the default page (Clip lab). Why: Streamlit 1.67's
    AppTest drops the entry script's sidebar elements from the element tree on any run that asks for a page
    by hash (every run after the first). The script still runs them - session state is right - but tests
    could not reach the sidebar widgets. Asking for no page (= the default page) avoids that.
    """
    import types

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    plain_run, plain_switch = at._run, at.switch_page  # every run (at.run, widget.run) goes through _run
    switched = []

    def _run(self, widget_state=None, timeout=None):
        if not switched:
            for attr in ("_page_hash", "_finished_page_script_hash"):
                if hasattr(self, attr):
                    setattr(self, attr, "")
        return plain_run(widget_state, timeout=timeout)

    def switch_page(self, page_path):
        switched.append(page_path)
        return plain_switch(page_path)

    at._run = types.MethodType(_run, at)
    at.switch_page = types.MethodType(switch_page, at)
    return at


def page_from_link(page: str, **query):
    """The explorer opened from a link: ``query`` in the URL, then ``views/<page>.py``; checked for errors."""
    at = new_app()
    at.query_params.update(query)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert_ok(at)
    return at


def selection(at):
    """The run's resolved ``app.selection.Selection``."""
    return at.session_state["_hf_selection"]


def choices(at) -> dict:
    """The session's stored choices (``app.selection.choices``)."""
    return at.session_state["_hf_choices"]


def texts(at, kind: str) -> list[str]:
    """Values of all elements of one kind (``error``, ``warning``, ``markdown``...) in page and sidebar."""
    return [str(e.value) for e in getattr(at, kind)]


def plotly_specs(at) -> list[dict]:
    """Every plotly figure of the page: Feature space's maps (drawn in their component frame), then the
    charts."""
    import json

    return linked_map_figures(at) + [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def player_spec(at) -> dict:
    """The Gate maps player: the figure with animation frames and a scrubber."""
    return next(s for s in plotly_specs(at) if s.get("frames") and s["layout"].get("sliders"))


def titled_spec(at, text: str) -> dict:
    """The first figure whose title contains ``text``."""
    return next(s for s in plotly_specs(at) if text in str((s["layout"].get("title") or {}).get("text", "")))


def linked_map_figures(at) -> list[dict]:
    """The figures of Feature space's maps (``app.linked_maps``: one component frame drawing them all), in
    page order."""
    return [m["figure"] for args in linked_map_args(at) for m in args["maps"]]


def linked_map_args(at) -> list[dict]:
    """The arguments of every maps frame on the page (``maps``: slot, digest and figure of each plot)."""
    import json

    return [json.loads(c.proto.json_args) for c in at.get("component_instance")
            if c.proto.component_name.endswith("linked_maps")]


def plotly_array(v) -> np.ndarray:
    """A Plotly array from a figure spec: a list, or plotly's typed-array encoding {dtype, bdata, shape}."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(n) for n in str(v.get("shape", len(a))).split(",")])
    return np.asarray(v, dtype=float)


def assert_ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]

