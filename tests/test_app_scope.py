"""Out-of-scope notes (hfnet_core/analysis/scope.py): which clips make a model's answer meaningless, and why."""

from __future__ import annotations

from hfnet_core.analysis.scope import scope_notes, training_dataset
from hfnet_core.data.synthetic import SYNTH_CLASSES

DEMO = dict(input_size=112, num_segments=8, class_names=SYNTH_CLASSES, trained_on="synth")


def notes(**clip) -> list[str]:
    base = dict(clip_dataset="synth", width=112, height=112, duration_s=2.0, num_frames=16, top_probs=[0.9, 0.05])
    return scope_notes(**DEMO, **{**base, **clip})


def test_a_clip_like_the_training_set_needs_no_note():
    assert notes() == []


def test_foreign_footage():
    n = notes(clip_dataset=None)
    assert n == ["Trained only on SynthSomething (synthetic clips): it knows 16 classes and answers with one of "
                 "them whatever the clip shows; this clip is a file from outside it."]
    assert "this clip is not from that dataset" in notes(clip_dataset="something-v1")[0]
    assert notes(clip_dataset="SynthSomething") == []  # the samples' own spelling of the dataset


def test_resolution_aspect_length_and_confidence():
    assert "shrunk 10×" in notes(width=1920, height=1080)[0]  # the shorter side: 1080 / 112
    assert "enlarged 4.7×" in notes(width=32, height=24)[0]
    assert any("aspect ratio is 3.0:1" in x for x in notes(width=336, height=112))
    assert notes(num_frames=4) == ["It has 4 frames; the model samples 8, so some are repeated."]
    assert "one every 10.0 s" in notes(duration_s=80.0, num_frames=800)[0]
    assert notes(top_probs=[0.24, 0.2]) == ["Low confidence: its best class gets 24%."]


def test_training_dataset_from_the_checkpoint_record():
    assert training_dataset({"training": {"config": {"data": {"dataset": "something-v1"}}}}) == "something-v1"
    assert training_dataset({}) is None and training_dataset({"training": "garbage"}) is None
    assert scope_notes(**{**DEMO, "trained_on": None}, clip_dataset=None, width=112, height=112, duration_s=2.0,
                       num_frames=16, top_probs=[0.9]) == []
