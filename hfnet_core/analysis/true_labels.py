"""The true label of a clip file when its path or its dataset says it, and of the same clip reversed.

Sources, first match wins (``find_true_label`` returns the label and which source gave it):

1. ``labels`` - a table the user passes (``load_labels_file``): ``clip<sep>label`` per line, separator
   tab, ``;`` or ``,``; clip = relative path, file name or stem; label = a class name or a class index.
2. ``samples.json`` next to the clip (the explorer's shipped samples: ``{"clips": [{"file", "label"}]}``).
3. A Something-v1 frame folder: ``<list>_videofolder.txt`` (``<folder> <num_frames> <label index>``) and
   ``category.txt`` in one of the three folders above it - the layout ``hfnet synth`` and TSM write.
   The official ``something-something-v1-*.csv`` files (``<id>;<label name>``) are read too.
4. A class folder: the parent folder's name is a class name (``<root>/<class>/<clip>.mp4``, HMDB/UCF style
   and ``hfnet synth``'s ``videos/`` tree).
5. The file name itself: ``NN_<class slug>.<ext>`` as the shipped SynthSomething samples are named
   (``00_moving_sth_from_left_to_right.mp4``); ``sth`` stands for "something", ``_``/``-`` for spaces.

Names are compared after ``normalise_class_name`` (case, separators, brackets, ``sth``), and the label
returned is always spelled as in ``class_names``. A label found by 1-3 that is not one of the model's
classes is still returned (the caller reports it but cannot mark a prediction right or wrong).

Reversal (``reversed_label``): SynthSomething's classes come in pairs whose clips are exact time reversals
of each other (``hfnet_core.data.synthetic.REVERSED_PAIRS``); "holding still" and "shaking" are
unchanged by reversal. So the reversed clip of a "left to right" clip is truly "right to left". For
classes outside that map (real datasets) the reversed label is unknown.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

from hfnet_core.errors import DatasetError

__all__ = ["normalise_class_name", "label_from_file_name", "load_labels_file", "find_true_label",
           "reversed_label", "REVERSED_BY_NAME"]


def normalise_class_name(name: str) -> str:
    """``"Moving_sth from-left [to] right"`` -> ``"moving something from left to right"``."""
    s = re.sub(r"[\[\]()]", " ", str(name).lower())
    s = re.sub(r"[_\-./]+", " ", s)
    s = re.sub(r"\bsth\b", "something", s)
    return " ".join(s.split())


def _match(name: str, class_names: Sequence[str]) -> str | None:
    n = normalise_class_name(name)
    for c in class_names:
        if normalise_class_name(c) == n:
            return c
    return None


def label_from_file_name(path: str | os.PathLike[str], class_names: Sequence[str]) -> str | None:
    """The class named by a file name ``[NN_]<slug>.<ext>`` (leading number optional), else None."""
    stem = Path(path).name.split(".")[0]
    stem = re.sub(r"^\d+[_\- ]+", "", stem)
    return _match(stem, class_names) if stem else None


def load_labels_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``clip -> label`` from a text table (tab, ``;`` or ``,`` separated; a ``path,label`` header is
    skipped). Raises ``DatasetError`` naming the file and line for anything it cannot read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{p}: cannot read the labels file ({e}).") from e
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(f"{p}: the labels file is empty; expected 'clip,label' lines.")
    sep = next((s for s in ("\t", ";", ",") if s in lines[0]), None)
    if sep is None:
        raise DatasetError(f"{p}:1: expected 'clip<TAB|;|,>label', got {lines[0]!r}.")
    table: dict[str, str] = {}
    for i, row in enumerate(csv.reader(lines, delimiter=sep), 1):
        if len(row) < 2 or not row[0].strip():
            raise DatasetError(f"{p}:{i}: expected 'clip{sep}label', got {sep.join(row)!r}.")
        key, label = row[0].strip(), row[1].strip()
        if i == 1 and label.lower() in ("label", "class", "label_name", "template"):
            continue  # header
        table[key] = label
    return table


def _resolve(label: str, class_names: Sequence[str]) -> str:
    """A label cell -> a class name: an index into ``class_names`` or a (normalised) name."""
    if label.isdigit() and class_names:
        i = int(label)
        if 0 <= i < len(class_names):
            return class_names[i]
    return _match(label, class_names) or label


def _stamp(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=64)
def _samples_json(path: str, stamp: tuple[int, int]) -> dict[str, str]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    clips = doc.get("clips") if isinstance(doc, dict) else None
    return {str(c["file"]): str(c["label"]) for c in clips or [] if isinstance(c, dict) and c.get("file")
            and c.get("label")}


@functools.lru_cache(maxsize=16)
def _videofolder_lists(folder: str, stamps: tuple[tuple[str, int, int], ...]) -> dict[str, str]:
    """``<frames folder relative to the frames root> -> class name`` from every list file in ``folder``."""
    base = Path(folder)
    out: dict[str, str] = {}
    categories = base / "category.txt"
    names = [ln.strip() for ln in categories.read_text(encoding="utf-8").splitlines() if ln.strip()] \
        if categories.is_file() else []
    for lst in sorted(base.glob("*_videofolder.txt")):
        for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[-1].isdigit() and names and int(parts[-1]) < len(names):
                out[" ".join(parts[:-2])] = names[int(parts[-1])]
    for lst in sorted(base.glob("something-something-v1-*.csv")):
        if lst.name.endswith("labels.csv"):
            continue
        for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
            if ";" in line:
                key, label = line.split(";", 1)
                out[key.strip()] = label.strip()
    return out


def _dataset_lists(folder: Path) -> dict[str, str]:
    files = sorted([*folder.glob("*_videofolder.txt"), *folder.glob("something-something-v1-*.csv")])
    if not files:
        return {}
    stamps = tuple((f.name, *_stamp(f)) for f in files)
    return _videofolder_lists(str(folder), stamps)


def find_true_label(path: str | os.PathLike[str], class_names: Sequence[str],
                    labels: Mapping[str, str] | None = None, name: str | None = None) -> tuple[str | None, str | None]:
    """(label, source) of a clip file or frame folder, or (None, None) when nothing tells it.

    ``name``: the clip's name as the user gave it (a path relative to the folder they passed), tried
    first against ``labels``. ``source`` is one of "labels file", "samples.json", "Something-v1 list",
    "class folder", "file name".
    """
    p = Path(path)
    if labels:
        for key in (name, str(path), p.as_posix(), p.name, p.stem):
            if key and key in labels:
                return _resolve(labels[key], class_names), "labels file"
    manifest = p.parent / "samples.json"
    if manifest.is_file():
        hit = _samples_json(str(manifest), _stamp(manifest)).get(p.name)
        if hit:
            return _resolve(hit, class_names), "samples.json"
    resolved = p.resolve()
    for up in list(resolved.parents)[:4]:
        table = _dataset_lists(up)
        if not table:
            continue
        for root in [resolved.parent, *list(resolved.parents)[1:4]]:
            try:
                key = resolved.relative_to(root).as_posix()
            except ValueError:
                continue
            if key in table:
                return _resolve(table[key], class_names), "Something-v1 list"
    parent = _match(p.parent.name, class_names) if p.parent.name else None
    if parent:
        return parent, "class folder"
    from_name = label_from_file_name(p, class_names)
    if from_name:
        return from_name, "file name"
    return None, None


def _pair_map() -> dict[str, str]:
    from hfnet_core.data.synthetic import ORDER_FREE_CLASSES, REVERSED_PAIRS, SYNTH_CLASSES

    out = {}
    for a, b in REVERSED_PAIRS:
        out[normalise_class_name(SYNTH_CLASSES[a])] = SYNTH_CLASSES[b]
        out[normalise_class_name(SYNTH_CLASSES[b])] = SYNTH_CLASSES[a]
    for c in ORDER_FREE_CLASSES:
        out[normalise_class_name(SYNTH_CLASSES[c])] = SYNTH_CLASSES[c]
    return out


#: normalised class name -> the true class of the same clip played backwards (SynthSomething's pairs).
REVERSED_BY_NAME: dict[str, str] = _pair_map()


def reversed_label(label: str | None, class_names: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(true label of the reversed clip, source) from the reversed-pair map, or (None, None) when the
    forward label is unknown or its class has no known reversal. Spelled as in ``class_names`` when it
    is one of them."""
    if not label:
        return None, None
    hit = REVERSED_BY_NAME.get(normalise_class_name(label))
    if hit is None:
        return None, None
    return (_match(hit, class_names) or hit), "reversed-pair map"
