"""``hfnet convert IN OUT``: turn a foreign checkpoint into hfnet's own .safetensors format.

Prints what was mapped, squeezed, filled, dropped and recovered; exit code 0 on success, 2 when the file
cannot be converted (the message says why and what to pass).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch

from ..native_checkpoint import save_checkpoint
from ..errors import HfnetError
from . import FORMATS, import_checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfnet convert",
        description="Convert a TSN/TSM/GSM, mmaction2, torchvision or Caffe BN-Inception checkpoint to hfnet's "
                    "format. Pickled files are read with torch.load(weights_only=True): nothing in them is run.",
        epilog="formats: " + "; ".join(f"{k} = {v[1]}" for k, v in FORMATS.items()),
    )
    p.add_argument("input", help="checkpoint to convert (.pth, .pth.tar, .pt, .safetensors)")
    p.add_argument("output", nargs="?", help="hfnet checkpoint to write (.safetensors); omit with --dry-run")
    p.add_argument("--format", choices=sorted(FORMATS), help="input format (default: detected from the keys)")
    p.add_argument("--num-segments", type=int, help="frames per clip the model was trained with, when the file "
                                                    "does not record it")
    p.add_argument("--consensus", choices=["avg", "trn"], help="consensus (default: from the file, else avg)")
    p.add_argument("--classes", metavar="FILE", help="class names, one per line, in classifier order")
    p.add_argument("--drop-unknown", action="store_true",
                   help="drop modules hfnet does not implement (non-local blocks) instead of failing; listed")
    p.add_argument("--input-size", type=int, help="crop side the model expects (default 224)")
    p.add_argument("--temporal", choices=["tsm", "gsm", "hf", "none"],
                   help="the temporal operator the file was trained with, where its keys cannot show it "
                        "(TSM on BN-Inception); 'none' loads it as a plain TSN (default: what the keys show)")
    p.add_argument("--shift-div", type=int, help="TSM: 1/N of the channels move each way (TSM's default 8), "
                                                 "when the file does not record it")
    p.add_argument("--shift-place", choices=["blockres", "block"], help="TSM placement where the keys cannot show it")
    p.add_argument("--fp16", action="store_true", help="store weights in float16 (half the file size)")
    p.add_argument("--dry-run", action="store_true", help="import and report, write nothing")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output is None and not args.dry_run:
        print("hfnet convert: give OUT (or --dry-run)", file=sys.stderr)
        return 2
    try:
        loaded = import_checkpoint(args.input, format=args.format, num_segments=args.num_segments,
                                   consensus=args.consensus, classes_file=args.classes,
                                   drop_unknown=args.drop_unknown, input_size=args.input_size,
                                   temporal=args.temporal, shift_div=args.shift_div, shift_place=args.shift_place)
    except HfnetError as e:  # unreadable, hostile or too large (docs/limits.md): one line, nothing written
        print(f"hfnet convert: {e.one_line()}", file=sys.stderr)
        return 2
    report = loaded.import_report
    from .common import ImportReport

    for line in ImportReport(**report).summary_lines():
        print(line)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    try:
        out = save_checkpoint(args.output, loaded.model, loaded.class_names,
                              extra={"imported_from": report},
                              dtype=torch.float16 if args.fp16 else None)
    except HfnetError as e:  # e.g. a full disk or a read-only folder (atomic.WriteError): nothing partial left
        print(f"hfnet convert: {e.one_line()}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
