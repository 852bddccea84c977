"""Model cards: what each loaded checkpoint is - its temporal operators (HF, GSM, TSM), where they sit and what
they cost -, what it costs beside the paper's Table I and beside the operators' own papers, how it was trained."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import selection as S
from app.downloads import show_figure
from app.loaders import LoadedModel
from app.model_facts import class_words, hf_blocks, hf_conservative, last_block, matches_operator_row, matches_table_row, \
    mixing_words, operator_rows, scale_vs_paper, temporal_summary
from app.ui import guard, need_models, page_title
from hfnet_core.analysis.gates import short_block_name
from hfnet_core.multitask import TASKS

sel = S.current()
page_title("Model cards")


@st.cache_data(show_spinner="Counting parameters and FLOPs…", max_entries=16)
def _complexity(sha: str, _model: Any) -> dict[str, Any]:
    from hfnet_core.complexity import count_flops, count_params  # optional module: imported lazily

    return {"params": count_params(_model), "flops": count_flops(_model)}


@st.cache_data(show_spinner="Recomputing the paper's Table I…")
def _table_one() -> list[dict[str, Any]]:
    from hfnet_core.complexity import table_one

    return table_one()


@st.cache_data(show_spinner="Counting TSN, HF, GSM and TSM beside their papers…")
def _operator_table() -> list[dict[str, Any]]:
    from hfnet_core.complexity import operator_table

    return operator_table()


def _fmt_count(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


_RECIPE = (("optim", "lr", "learning rate"), ("optim", "schedule", "schedule"), ("optim", "gate_lr_mult",
           "gate learning-rate factor"), ("train", "batch_size", "batch size"), ("data", "dataset", "dataset"))


def _training_summary(training: dict[str, Any], label: str, multitask: bool = False, gates: bool = True) -> None:
    """Key facts, last-epoch metrics, a training curve from ``history``, the rest in an expander. A
    multi-task model's logged top-1 / top-5 are its actions' (the training log's one number); a model
    without gates does not list the gates' learning-rate factor (its recipe has one, unused)."""
    facts: dict[str, Any] = {}
    if "epoch" in training or "epochs" in training:
        facts["epochs"] = f"{training.get('epoch', '?')} of {training.get('epochs', '?')}"
    cfg = training.get("config") if isinstance(training.get("config"), dict) else {}
    for section, key, name in _RECIPE:
        val = (cfg.get(section) or {}).get(key) if isinstance(cfg.get(section), dict) else None
        if val not in (None, "") and (gates or key != "gate_lr_mult"):
            facts[name] = val
    if training.get("wall_time_s") is not None:
        facts["training time"] = f"{float(training['wall_time_s']) / 60:.1f} min"
    metrics = training.get("metrics") if isinstance(training.get("metrics"), dict) else {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and k != "epoch" and not k.endswith("time_s"):
            what = " (action)" if multitask and ("top1" in k or "top5" in k) else ""
            facts[f"last epoch: {k}{what}"] = round(v, 4) if isinstance(v, float) else v
    for k, v in training.items():
        if k not in facts and not isinstance(v, (dict, list)) and k not in ("epoch", "epochs", "wall_time_s"):
            facts[k] = v
    if facts:
        st.table({"": list(facts), "value": [str(v) for v in facts.values()]})
    history = training.get("history")
    if isinstance(history, list) and len(history) > 1 and all(isinstance(r, dict) for r in history):
        fig = _history_figure(history)
        if fig is not None:
            show_figure(fig, f"train_{label}", sel)
    with st.expander("Full training record"):
        st.json(training, expanded=False)


def _history_figure(history: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    keys = [k for k in history[-1] if isinstance(history[-1][k], (int, float)) and k != "epoch"]
    loss = [k for k in keys if "loss" in k]
    acc = [k for k in keys if any(w in k for w in ("top1", "top5", "acc"))]
    if not loss and not acc:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.12)
    for col, group in ((1, loss), (2, acc)):
        for k in group:
            fig.add_trace(go.Scatter(x=x, y=[r.get(k) for r in history], name=k, mode="lines+markers"),
                          row=1, col=col)
    fig.update_xaxes(title="epoch")
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.3))
    return fig


def _operators_table(m: LoadedModel, complexity: dict[str, Any] | None) -> None:
    """Each temporal operator of the model: kind, sites, where, options, parameters, its share of the FLOPs."""
    st.markdown("**Temporal operators**")
    rows = operator_rows(m.checkpoint, complexity["flops"] if complexity else None)
    if not rows:
        st.caption(f"None: each frame goes through the backbone on its own; frames first meet in "
                   f"{mixing_words(m.checkpoint)}.")
        return
    trainable = complexity["params"]["trainable"] if complexity else 0
    fields = ("sites", "where", "options", "parameters", "FLOPs")
    table: dict[str, list[str]] = {"": list(fields)}
    for r in rows:  # one column per operator kind: the card stays narrow enough for two side by side
        params = "0 (parameter-free)" if not r["params"] else (
            f"{r['params']:,}" + (f" ({r['params'] / trainable:.2%} of the trainable)" if trainable else ""))
        if "flops" not in r:
            flops = "not counted"
        else:
            flops = "0 (it moves data: no multiply-adds)" if not r["flops"] else \
                f"{_fmt_count(r['flops'])} ({r['flops_share']:.2%} of the clip)"
        table[r["name"]] = [str(r["sites"]), r["where"], r["options"], params, flops]
    st.table(table)


def _epic_metrics(m: LoadedModel) -> dict[str, Any] | None:
    """The EPIC-Kitchens metrics of a multi-task model's eval bundle: those ``hfnet eval`` wrote beside it
    (``<stem>.test.json``, many-shot classes from the training counts) when they are for this bundle, else
    computed from the bundle (every class present counts as many-shot)."""
    import json
    from pathlib import Path

    from hfnet_core.evaluate import multitask_metrics

    if m.task_source is None:
        return None
    side = Path(str(m.bundle_path)).with_suffix(".json") if m.bundle_path else None
    try:
        saved = json.loads(side.read_text(encoding="utf-8")) if side is not None and side.is_file() else {}
        if isinstance(saved, dict) and isinstance(saved.get("epic"), dict) \
                and saved.get("num_clips") == len(m.task_source.clip_ids):
            return saved
    except (OSError, ValueError):
        pass
    return multitask_metrics(m.task_source.logits, m.task_source.labels, m.spec)


def _action_view_words(spec: Any) -> str:
    """What the pages' action classes are (task_view.py): the listed pairs, plus one for the rest."""
    from hfnet_core.analysis.task_view import UNLISTED, listed_actions

    listed = listed_actions(spec)
    if listed is None:
        return "none: too many verb-noun pairs without an action classifier (its verbs are shown)"
    rest = spec.num_verbs * spec.num_nouns - len(listed)
    return f"{len(listed)} classes" + (f" + “{UNLISTED}” for the other {rest} pairs" if rest else "")


def _tasks_section(m: LoadedModel) -> None:
    """Verb, noun and action: the heads, the action bias as implemented, and the challenge's metrics."""
    spec = m.spec
    st.markdown("**Verb, noun and action** (a multi-task model, EPIC-Kitchens style)")
    facts = {
        "verb classes": f"{spec.num_verbs}",
        "noun classes": f"{spec.num_nouns}",
        "action classifier": (f"{len(spec.actions)} classes (the verb-noun pairs seen in training)"
                              if spec.actions else "none (verb and noun heads only, as the EPIC baselines)"),
        "action bias": ("on: verb′ = verb + log Σₙ softmax(action)₍ᵥ,ₙ₎, noun′ likewise "
                        "(floor log 10⁻⁶)" if spec.actions and spec.action_bias else "off"),
        "action ranking": "p(verb) × p(noun) over every pair, as the EPIC-Kitchens challenge scores it",
        "actions on the other pages": _action_view_words(spec),
        "shown on the other pages as": m.task or "verb",
    }
    st.table({"": list(facts), "value": list(facts.values())})
    with guard("Could not compute the EPIC-Kitchens metrics of this bundle"):
        metrics = _epic_metrics(m)
        if metrics is None:
            return
        e = metrics["epic"]
        rows = {"": ["top-1", "top-5", "precision", "recall"]}
        for task in TASKS:
            rows[task] = [f"{100 * float(e[k][task] or 0.0):.1f} %" for k in ("top1", "top5", "precision", "recall")]
        st.table(rows)
        shots = metrics.get("many_shot")
        st.caption(f"EPIC-Kitchens metrics on {metrics['num_clips']} clips of the eval bundle. Precision and "
                   "recall are macro-averaged over the many-shot classes "
                   + (f"(> {shots['threshold']} training clips over all epochs: {shots['verbs']} verbs, "
                      f"{shots['nouns']} nouns, "
                      f"{shots['actions']} actions)." if isinstance(shots, dict) else
                      "(no training counts recorded: every class present in the bundle)."))


def _consensus_words(cfg: Any) -> str:
    """How the model joins its frames, with the head's own size where it has one."""
    args = cfg.consensus_args or {}
    words = {"avg": "TSN average", "trn": "TRN multi-scale relation",
             "gru": f"GRU over the frames (hidden size {args.get('hidden_size', '?')}), its last state → classifier",
             "identity": "none: the 3D part gives one clip feature (ECO)",
             "multitask": "TSN average, verb / noun / action classifiers"}
    return words.get(str(cfg.consensus), str(cfg.consensus))


def _card(m: LoadedModel) -> None:
    ck = m.checkpoint
    cfg = ck.config
    st.subheader(m.label)
    blocks = hf_blocks(ck)
    arch = {
        "backbone": f"{cfg.backbone} (width ×{cfg.width_mult:g})",
        "scale beside Table I": scale_vs_paper(m.checkpoint),
        "consensus": _consensus_words(cfg),
        "frames per clip": cfg.num_segments,
        "input": f"{cfg.input_size}×{cfg.input_size} px",
        "classes": class_words(ck) + ("" if m.names_source == "checkpoint" else f" (names from {m.names_source})"),
        "temporal operators": temporal_summary(ck),
        "HF placement": ("after " + ", ".join(short_block_name(b) for b in blocks)) if blocks else "no HF",
        "HF kind": {True: "conservative (paper)", False: "non-conservative (Table I ablation)"}.get(
            hf_conservative(ck), "no HF"),
        "pixel convention": "{channel_order}, 0-{scale:g}, mean {mean}".format(**ck.model.input_convention.to_dict()),
        "registry name": cfg.name or "-",
    }
    st.table({"": list(arch), "value": [str(v) for v in arch.values()]})
    if blocks and cfg.consensus == "avg" and blocks == [last_block(ck)]:
        st.warning("This model has HF only after the last block. With TSN's average consensus that cannot change "
                   "its predictions in eval mode (the gate only moves features between frames; the average "
                   "of the frames is unchanged).")

    if m.spec is not None:
        _tasks_section(m)

    c = None
    with guard("Could not count this model's parameters and FLOPs"):
        c = _complexity(ck.sha256, ck.model)
    _operators_table(m, c)

    st.markdown("**Cost**")
    if c is not None:
        p, f = c["params"], c["flops"]
        cost = {
            "parameters (paper convention)": f"{p['paper']:,}",
            "trainable parameters": f"{p['trainable']:,}",
            f"FLOPs per clip ({f['num_frames']} frames, {f['size']} px)": _fmt_count(f["total"]),
        }
        if blocks:
            over = f["hf_gate_macs"] / max(f["total"] - f["hf_gate_macs"], 1)
            cost["HF gate parameters"] = f"{p['hf']:,} ({p['hf'] / max(p['trainable'], 1):.2%})"
            cost["HF gate FLOPs"] = f"{_fmt_count(f['hf_gate_macs'])} (+{over:.2%} over the same model without HF)"
        if {label.split(".", 1)[0] for label in f["temporal_sites"]} - {"hf"}:  # GSM, TSM, or several kinds
            ops_cost = sum(f["temporal_sites"].values())
            share = p["temporal"] / max(p["trainable"], 1)
            cost["all temporal operators: parameters"] = f"{p['temporal']:,} ({share:.2%})"
            over = ops_cost / max(f["total"] - ops_cost, 1)
            cost["all temporal operators: FLOPs"] = f"{_fmt_count(ops_cost)} (+{over:.2%} over the same model without them)"
        st.table({"": list(cost), "value": list(cost.values())})

    training = ck.metadata.get("training") or {}
    st.markdown("**Training**")
    if training:
        _training_summary(training, m.label, m.spec is not None, bool(ck.model.gate_parameters()))
    else:
        st.caption("The checkpoint records no training summary.")
    if m.bundle is not None:
        b = m.bundle
        known = int((b.labels >= 0).sum())
        st.markdown(f"**Eval bundle** `{m.bundle_path}`: {len(b.clip_ids)} clips"
                    + (f", top-1 {m.task + ' ' if m.task else ''}accuracy **{b.accuracy:.1%}** on {known} "
                       "labelled clips" if known else "")
                    + (f" ({b.metadata['unlisted_true']} clips whose true pair has no action class are left out "
                       "here; the EPIC table above counts them)" if b.metadata.get("unlisted_true") else "")
                    + (f" ({b.metadata.get('dataset')}, {b.metadata.get('split')})" if b.metadata.get("dataset") else ""))
    else:
        st.caption("No eval bundle next to this checkpoint (`<name>.test.npz`).")
    if ck.import_report:
        st.markdown("**Import report** (this file came from another codebase and was converted in memory)")
        st.json(ck.import_report, expanded=True)
    st.caption(f"File `{ck.path}` · sha256 `{ck.sha256[:16]}…` · written by hfnet "
               f"{ck.metadata.get('hfnet_version', '?')}")


models = need_models(sel)
cols = st.columns(len(models))
for col, m in zip(cols, models):
    with col:
        _card(m)

st.divider()
st.subheader("The paper's Table I beside our count")
st.caption("Something-v1, BNInception, 16 frames, 224 px, 174 classes; accuracy is the paper's. Our params and "
           "FLOPs are recomputed from the same architecture (docs/complexity.md explains the conventions). "
           "“Loaded here” names the loaded models of each row's architecture, with their real scale.")
with guard("Could not recompute Table I"):
    rows = _table_one()
    table = []
    for r in rows:
        mine = [f"{m.label} ({scale_vs_paper(m.checkpoint)})" for m in models
                if matches_table_row(m.checkpoint, r)]
        table.append({
            "model": r["label"],
            "paper acc. %": r["paper_accuracy"],
            "params (ours)": f"{r['params_m']:.2f}M",
            "params (paper)": f"{r['paper_params_m']:.2f}M",
            "FLOPs (ours)": f"{r['flops_g']:.2f}G",
            "FLOPs (paper)": f"{r['paper_flops_g']:.2f}G",
            "loaded here": ", ".join(mine),
            "notes": " ".join(r["notes"]),
        })
    st.dataframe(table, hide_index=True, width="stretch")
st.info("Why “+1HF” barely helps a TSN: HF conserves the sum of features over frames, and global pooling, the "
        "classifier and TSN's average consensus are all linear - so an HF module after the *last* block cannot "
        "change TSN's logits at test time. Only HF modules before non-linear layers can. (See *How HF works*.)",
        icon=":material/lightbulb:")

st.subheader("The temporal operators beside their papers")
st.caption("Each operator's model at its paper's setting (BN-Inception or ResNet-50, 224 px, 174 classes, the frames "
           "shown), counted by hfnet beside the parameters and FLOPs its paper or model zoo prints. Params are "
           "counted the way the source counts them (trainable, or the state dict with BN statistics). FLOPs: the HF "
           "paper's convention (multiply-adds + BN, ReLU and pooling elements). TSM moves data: no multiply-adds, no "
           "parameters. “Loaded here” names the loaded models of each row's architecture, with their real scale.")
with guard("Could not count the temporal operators' models"):
    table = []
    for r in _operator_table():
        mine = [f"{m.label} ({scale_vs_paper(m.checkpoint)})" for m in models if matches_operator_row(m.checkpoint, r)]
        ours_p = r["params_trainable"] if r["params_kind"] == "trainable" else r["params"]
        table.append({
            "model": r["label"],
            "frames": r["frames"],
            "operators": ", ".join(f"{o.upper()} ×{n}" for o, n in r["operators"].items()) or "none",
            "params (ours)": f"{ours_p / 1e6:.2f}M",
            "params (published)": "-" if r["published_params_m"] is None else f"{r['published_params_m']:.2f}M",
            "FLOPs (ours)": f"{r['flops'] / 1e9:.2f}G",
            "FLOPs (published)": "-" if r["published_flops_g"] is None else f"{r['published_flops_g']:.2f}G",
            "same digits": {True: "✓", False: "✗ differ", None: "nothing published"}[r["match"]],
            "loaded here": ", ".join(mine),
            "params counted as": r["params_kind"] if r["params_kind"] != "-" else "state dict",
            "source": r["source"],
        })
    st.dataframe(table, hide_index=True, width="stretch")
