"""The ``hfnet`` console script: one subcommand per concern, each implemented by its own module.

Subcommands are imported lazily so ``hfnet complexity`` does not pay for loading the data or app code.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Sequence

from .errors import HfnetError, describe

#: subcommand -> ("module:function", one-line help). Each function takes argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "complexity": ("hfnet_core.complexity:cli_main", "params and FLOPs beside the paper's Table I"),
    "synth": ("hfnet_core.data.synth_cli:main", "write the SynthSomething dataset (mp4 + Something-v1 layout)"),
    "train": ("hfnet_core.train:cli_main", "train a model from a config file + overrides"),
    "eval": ("hfnet_core.evaluate:cli_main", "evaluate a checkpoint; write metrics and an eval bundle"),
    "extract": ("hfnet_core.extract:cli_main", "write pooled features for a folder of clips"),
    "project": ("hfnet_core.analysis.precompute:cli_main",
                "t-SNE / UMAP / PCA, neighbours and silhouette of eval bundles, stored beside them"),
    "convert": ("hfnet_core.importers.cli:cli_main", "convert a TSN/TSM/GSM/mmaction2/torchvision checkpoint"),
    "train-demo": ("hfnet_core.demo:cli_main", "regenerate the shipped demo checkpoint pair"),
    "predict": ("hfnet_core.predict:cli_main", "top-k of one or more models on clips; agreement, true label, --reverse"),
    "render": ("hfnet_core.render:cli_main", "a clip's frames with gate overlays and both models' top-3 as mp4/gif"),
}


def _usage() -> str:
    lines = ["usage: hfnet <command> [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `hfnet <command> --help` for a command's options; add --debug to any command to see a",
              "traceback where it would print one line."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from . import __version__

        print(__version__)
        return 0
    cmd = args[0]
    if cmd not in COMMANDS:
        print(f"hfnet: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    debug = "--debug" in args
    rest = [a for a in args[1:] if a != "--debug"]
    target, _ = COMMANDS[cmd]
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except HfnetError as e:  # a deliberate, explained failure: one line, no traceback
        if debug:
            traceback.print_exc()
        print(f"hfnet {cmd}: {e.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hfnet {cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug: say so in one line
        if debug:
            raise
        print(f"hfnet {cmd}: internal error ({describe(e)}). This is a bug in hfnet: rerun with --debug "
              "for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
