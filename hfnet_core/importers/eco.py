"""ECO-pytorch training checkpoints (ECO-Lite): ``{"epoch", "arch", "state_dict", "best_prec1", "lr"}``.

Keys (``nn.DataParallel``: ``module.`` in front): ``base_model.<BN-Inception Caffe names up to
inception_3c_double_3x3_1_bn>``, ``base_model.res3a_2.weight`` (128, 96, 3, 3, 3) ... ``base_model.res5b_bn.*``
(13 Conv3d with bias, 11 BatchNorm3d) and ``new_fc.{weight,bias}`` (K, 512). hfnet's ``ECOLite`` backbone
carries exactly these names, so the mapping is ``base_model.* -> base_model.*`` and ``new_fc -> head.new_fc``,
then a strict load. Recognised by ``res3a_2.weight`` among the backbone keys.

The file does not record its frame count (ECO's scripts use 16 segments; the 3D pooling depth is T/4):
pass ``num_segments`` as for every TSN-family file. The consensus is ECO's identity (one clip feature).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..errors import CheckpointError
from ..input_convention import InputConvention
from .common import ImportOptions, ImportReport, Mapped, strip_prefix

#: The key that tells an ECO checkpoint from the TSN layout it shares.
ECO_KEY = "base_model.res3a_2.weight"
#: res3a_2's output channels at width 1.0.
RES3A_CHANNELS = 128


def detect(state: dict[str, Tensor]) -> bool:
    return ECO_KEY in set(strip_prefix(state, "module.").values())


def map_state(obj: Any, state: dict[str, Tensor], opts: ImportOptions, report: ImportReport) -> Mapped:
    rel = strip_prefix(state, "module.")
    res3a = next(fk for fk, r in rel.items() if r == ECO_KEY)
    if state[res3a].dim() != 5:
        raise CheckpointError(None, f"has {res3a} of shape {tuple(state[res3a].shape)}; ECO's res3a_2 is a 3D "
                                    "convolution (out, in, 3, 3, 3).")
    mapped = Mapped({}, {}, "eco_lite", state[res3a].shape[0] / RES3A_CHANNELS, InputConvention.bninception(),
                    squeezable=True)
    for fk, r in rel.items():
        if r.startswith("base_model."):
            mapped.put(r, fk, state[fk])
        elif r.startswith("new_fc."):
            mapped.put("head." + r, fk, state[fk])
        else:
            mapped.put(r, fk, state[fk])  # named as unknown by the strict check
    mapped.facts["consensus"] = ("identity", "keys: ECO-Lite's 3D part (res3a_2 ... res5b_bn) fuses the frames")
    from .tsn_family import file_facts

    file_facts(obj, mapped, None)
    return mapped
