"""What every temporal operator is: a module on the ``(N*T, C, H, W)`` layout that mixes frames, placed at a
*site* of a backbone, returning its output and what it exposes for inspection, and declaring its cost.

Sites
-----
A site is a backbone module and a side of it: ``Site("inception_3a", "out")`` is the output of an Inception
block (where HF sits), ``Site("layer1.0.conv1", "in")`` the input of a residual branch's first convolution
(TSM's ``blockres``), ``Site("inception_3a_1x1", "out")`` a convolution's output before its BatchNorm
(GSM). Backbones call ``run.at(module, side, x)`` at every such point of their forward pass; the
``TemporalRun`` of that one pass applies the operator placed there, if any. Nothing is hooked and nothing
is stored on a module: one model instance can serve concurrent callers.

The same calls are the points where ``forward_intermediates`` can *tap* a tensor (a block output, a
convolution's, BatchNorm's or ReLU's output, an operator's output) for Grad-CAM or analysis.

A block whose output is a channel concatenation (an Inception block's branches) ends with
``run.join(block, parts)`` instead of ``torch.cat``: an operator at ``<block>:out`` that declares
``accepts_parts`` then receives the list of parts and may write the concatenation itself (HF's fused
path does, saving a pass over the features); every other operator, a site without one, and a site whose
``"<block>:out"`` is tapped get the concatenated tensor as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

SIDES = ("in", "out")


@dataclass(frozen=True)
class Site:
    """A backbone module (block or convolution, by its name) and the side of it an operator acts on."""

    module: str
    side: str = "out"

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"site side must be one of {SIDES}, got {self.side!r}")

    @property
    def key(self) -> str:
        return f"{self.module}:{self.side}"

    @classmethod
    def parse(cls, text: str, default_side: str) -> "Site":
        module, sep, side = text.rpartition(":")
        return cls(module, side) if sep else cls(text, default_side)


class TemporalOperator(nn.Module):
    """Interface of a temporal operator (one instance per site).

    Subclasses set ``op_name`` (the registry name, also the state-dict namespace of their parameters:
    ``<op_name>.<site module>.<param>``), implement ``forward`` and the cost declarations, and the class
    methods ``from_args`` (validated construction) and ``presets`` (named placements on a backbone).
    """

    op_name: ClassVar[str] = ""
    #: Side of a module the operator acts on when ``where`` names the module without one.
    default_side: ClassVar[str] = "out"
    #: What each inspection map means, for model cards and the explorer (map name -> sentence).
    map_meanings: ClassVar[dict[str, str]] = {}
    #: True if ``forward`` also takes a list of tensors whose channel concatenation is the input (a
    #: block's branches, see ``TemporalRun.join``) and returns exactly (bit for bit) what it returns for
    #: the concatenation.
    accepts_parts: ClassVar[bool] = False

    def forward(self, x: Tensor, num_segments: int, inspect: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """``x``: (N*T, C, H, W) -> (output of the same shape, inspection maps).

        Maps are (N, T, H, W) tensors unless documented otherwise; operators may skip maps that cost a
        pass over the features unless ``inspect`` is true.
        """
        raise NotImplementedError

    def macs(self, input_shape: tuple[int, int, int, int]) -> int:
        """Multiply-accumulates one call adds for an input of ``input_shape`` (the paper's FLOPs convention
        counts these); parameter-free data movement counts 0."""
        raise NotImplementedError

    def elementwise_ops(self, input_shape: tuple[int, int, int, int]) -> int:
        """Element-wise operations one call adds (activations, products, sums): reported separately, as
        the paper's Table I leaves them out of its FLOPs."""
        return 0

    def cost(self, input_shape: tuple[int, int, int, int]) -> dict[str, int]:
        """One call's cost in the paper's FLOPs units (``hfnet_core/complexity.py``): ``macs``, ``bn``
        (2 per normalised element), ``relu`` (1 per element) - all in the total - and ``elementwise``
        (reported beside it). Operators with their own BatchNorm / ReLU (GSM) override this."""
        return {"macs": self.macs(input_shape), "bn": 0, "relu": 0,
                "elementwise": self.elementwise_ops(input_shape)}

    @classmethod
    def from_args(cls, channels: int, args: Mapping[str, Any]) -> "TemporalOperator":
        """Build for a site of ``channels`` channels from a config entry's ``args`` (validated)."""
        raise NotImplementedError

    @classmethod
    def presets(cls, backbone: Any, args: Mapping[str, Any]) -> dict[str, tuple[Site, ...]]:
        """Named placements of this operator on ``backbone`` (e.g. {"all": ..., "last5": ...})."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Facts for model cards (options, parameter count)."""
        return {"op": self.op_name, "params": sum(p.numel() for p in self.parameters())}


@dataclass
class OperatorRecord:
    """What one operator at one site did in one forward pass, returned by ``forward_intermediates``."""

    op: str
    site: Site
    input_shape: tuple[int, int, int, int]
    maps: dict[str, Tensor] = field(default_factory=dict)


class TemporalRun:
    """The operators of one model and the bookkeeping of ONE forward pass (never shared between calls).

    ``at(module, side, x)`` is called by backbones at every site; it records taps before the operator
    (``"<module>:<side>"``) and after it (``"<op>.<module>"``), applies the operator placed there and, when
    ``record`` is set, keeps its ``OperatorRecord`` under ``"<op>.<module>"``.
    """

    __slots__ = ("ops", "num_segments", "record", "taps", "tapped", "records", "inplace_ok", "names", "joined")

    def __init__(self, ops: Mapping[str, TemporalOperator], num_segments: int, record: bool = False,
                 taps: frozenset[str] | set[str] = frozenset(), collect_names: bool = False) -> None:
        self.ops = ops
        self.num_segments = int(num_segments)
        self.record = record
        self.taps = frozenset(taps)
        self.tapped: dict[str, Tensor] = {}
        self.records: dict[str, OperatorRecord] = {}
        # In-place ReLUs would overwrite a tapped BatchNorm output that a gradient is asked for.
        self.inplace_ok = not self.taps
        #: With ``collect_names``: every tap name this pass offered, in order (``intermediate_names``).
        self.names: list[str] | None = [] if collect_names else None
        #: Sites whose operator ``join`` already applied (``at`` then passes the output through).
        self.joined: set[str] = set()

    def at(self, module: str, side: str, x: Tensor) -> Tensor:
        key = f"{module}:{side}"
        if key in self.joined:
            return x
        if self.names is not None:
            self.names.append(key)
        if self.taps and key in self.taps:
            self.tapped[key] = x
        op = self.ops.get(key)
        if op is None:
            return x
        return self._apply(op, module, side, x, tuple(x.shape))

    def join(self, module: str, parts: Sequence[Tensor]) -> Tensor:
        """The output of ``module``, the channel concatenation of ``parts``, with the operator at
        ``<module>:out`` applied here if it ``accepts_parts`` (so it can write the concatenation itself);
        the ``at(module, "out", ...)`` call that follows then passes the result through. When the tap
        ``"<module>:out"`` is requested the concatenation is made and handed to the operator instead (a
        gradient asked for at the tap must flow through it); such an operator must return the same for
        both."""
        key = f"{module}:out"
        op = self.ops.get(key)
        if op is None or not op.accepts_parts or (self.taps and key in self.taps):
            return torch.cat(list(parts), dim=1)
        if self.names is not None:
            self.names.append(key)
        shape = (parts[0].shape[0], sum(p.shape[1] for p in parts), *parts[0].shape[2:])
        self.joined.add(key)
        return self._apply(op, module, "out", list(parts), shape)

    def _apply(self, op: TemporalOperator, module: str, side: str, x: Tensor | list[Tensor],
               input_shape: tuple[int, ...]) -> Tensor:
        y, maps = op(x, self.num_segments, self.record)
        label = f"{op.op_name}.{module}"
        if self.names is not None:
            self.names.append(label)
        if self.record:
            self.records[label] = OperatorRecord(op.op_name, Site(module, side), input_shape, maps)
        if self.taps and label in self.taps:
            self.tapped[label] = y
        return y


#: A run with no operators and nothing to record: what a backbone uses on its own (image model).
NO_OPERATORS: Mapping[str, TemporalOperator] = {}


def plain_run(num_segments: int = 1) -> TemporalRun:
    return TemporalRun(NO_OPERATORS, num_segments)
