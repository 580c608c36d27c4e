"""The one strict state-dict loader, with a key report, for every checkpoint layout.

A checkpoint's keys come in one of two layouts (:data:`LAYOUTS`):

* ``'original'``: the keys of the original Score SDE code. NCSN++/DDPM++ and DDPM appended their blocks to an
  ``all_modules`` list (``all_modules.<i>.<...>``); our networks name them, and each records the map from the
  original keys to its own (:meth:`scoresde.nets.original_keys.OriginalCheckpointMixin.original_key_map`: the
  networks own their layout). NCSN and NCSNv2 use the original names themselves.
* ``'native'``: the network's own ``state_dict()`` keys (scoresde's checkpoint directories).

A ``module.`` prefix (``DataParallel``) is stripped. :func:`load_state_dict` loads strictly: every key must be
present with its shape, or :class:`~scoresde.checkpoint.errors.IncompatibleCheckpointError` names the missing,
unexpected and shape-mismatched keys (:class:`KeyReport`, in the checkpoint's own key names). :func:`ema_state_dict`
substitutes the original ``ExponentialMovingAverage``'s ``shadow_params`` (the trainable parameters in the original
``model.parameters()`` order, which is their order among the checkpoint's keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from torch import Tensor, nn

from ..nets.original_keys import OriginalCheckpointMixin
from ..numerics.checks import check_choice
from .errors import IncompatibleCheckpointError

__all__ = [
    "LAYOUTS",
    "KeyReport",
    "checkpoint_key_map",
    "ema_state_dict",
    "key_report",
    "load_original_checkpoint",
    "load_original_ema",
    "load_original_state_dict",
    "load_state_dict",
    "map_state_dict",
    "original_ema_state_dict",
    "strip_prefix",
    "to_original_state_dict",
]

LAYOUTS = ("original", "native")

#: how a shape mismatch is written: the key, then the checkpoint's shape and the network's (expected) one
MISMATCH_FORMAT = "{key} {checkpoint} vs {network} expected"


class KeyReport(NamedTuple):
    """What does not match between a checkpoint and a network, in the checkpoint's key names: ``missing`` keys
    (the network has them, the checkpoint not), ``unexpected`` ones, and ``mismatched`` ``(key, checkpoint shape,
    network shape)``."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        """Whether every key is present with the network's shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, mismatch_format: str = MISMATCH_FORMAT, limit: int = 12) -> str:
        """One line: ``missing keys (n): ...; unexpected keys (n): ...; shape mismatches (n): ...`` (the parts
        that are not empty, at most ``limit`` names each)."""
        mismatched = [mismatch_format.format(key=k, checkpoint=a, network=b) for k, a, b in self.mismatched]
        return "; ".join(f"{title} ({len(keys)}): {_format_keys(keys, limit)}" for title, keys in (
            ("missing keys", self.missing), ("unexpected keys", self.unexpected), ("shape mismatches", mismatched))
            if keys)


def _format_keys(keys: Sequence[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _check_layout(layout: str) -> None:
    check_choice("checkpoint layout", layout, LAYOUTS)


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """``state_dict`` with ``prefix`` (``DataParallel``'s ``module.``) removed from the keys that have it."""
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def checkpoint_key_map(net: nn.Module, layout: str = "original") -> dict[str, str]:
    """``{checkpoint key: key of net.state_dict()}`` for every persistent tensor of ``net``, in the checkpoint
    layout's order (for ``'original'``: the original ``model.state_dict()`` order)."""
    _check_layout(layout)
    if layout == "original" and isinstance(net, OriginalCheckpointMixin):
        return net.original_key_map()
    return {k: k for k in net.state_dict()}


def key_report(net: nn.Module, state_dict: Mapping[str, Tensor], layout: str = "original") -> KeyReport:
    """The :class:`KeyReport` of ``state_dict`` (``module.`` stripped) against ``net``."""
    sd = strip_prefix(state_dict)
    key_map = checkpoint_key_map(net, layout)
    own = net.state_dict()
    present = {key_map[k] for k in sd if k in key_map}
    inverse = {ours: theirs for theirs, ours in key_map.items()}
    return KeyReport(
        missing=[inverse[k] for k in own if k not in present],
        unexpected=[k for k in sd if k not in key_map],
        mismatched=[(k, tuple(v.shape), tuple(own[key_map[k]].shape)) for k, v in sd.items()
                    if k in key_map and tuple(v.shape) != tuple(own[key_map[k]].shape)])


def _raise_if_bad(net: nn.Module, report: KeyReport, what: str = "checkpoint") -> None:
    if not report.ok:
        raise IncompatibleCheckpointError(
            f"{what} does not match {type(net).__name__} (was the network built from the checkpoint's config?): "
            f"{report.summary()}", report)


def map_state_dict(net: nn.Module, state_dict: Mapping[str, Tensor], *, layout: str = "original"
                   ) -> dict[str, Tensor]:
    """``state_dict`` under ``net``'s own keys, after checking that keys and shapes match exactly.

    Raises:
        IncompatibleCheckpointError: naming the missing, unexpected and shape-mismatched keys (``.report``).
    """
    _raise_if_bad(net, key_report(net, state_dict, layout))
    key_map = checkpoint_key_map(net, layout)
    return {key_map[k]: v for k, v in strip_prefix(state_dict).items()}


def load_state_dict(net: nn.Module, state_dict: Mapping[str, Tensor], *, layout: str = "original") -> nn.Module:
    """Load ``state_dict`` (in ``layout``, ``module.`` prefix allowed) into ``net`` strictly; returns ``net``.

    Values are copied into the existing tensors, so each keeps its dtype (e.g. a float64 ``sigmas`` buffer).

    Raises:
        IncompatibleCheckpointError: naming the missing, unexpected and shape-mismatched keys (``.report``).
    """
    net.load_state_dict(map_state_dict(net, state_dict, layout=layout), strict=True)
    return net


def ema_state_dict(net: nn.Module, state_dict: Mapping[str, Tensor], ema: Mapping[str, Any] | Sequence[Tensor],
                   *, layout: str = "original") -> dict[str, Tensor]:
    """``state_dict`` (checkpoint keys, ``module.`` stripped) with the EMA's shadow parameters substituted: what the
    original ``ema.copy_to(model.parameters())`` gives.

    ``ema`` is the original checkpoint's ``'ema'`` entry (``{'decay', 'num_updates', 'shadow_params'}``) or its
    ``shadow_params`` list: the parameters with ``requires_grad`` (not the Fourier ``W``, no buffers) in the original
    ``model.parameters()`` order, i.e. their order among ``state_dict``'s keys. Keys and shapes are checked first.

    Raises:
        IncompatibleCheckpointError: mismatched keys, a wrong number of shadow parameters, or shadow shapes
            (``#i key``) that differ from the network's.
    """
    sd = strip_prefix(state_dict)
    mapped = map_state_dict(net, sd, layout=layout)
    key_map = checkpoint_key_map(net, layout)
    params = dict(net.named_parameters())
    trainable = [k for k in sd if key_map[k] in params and params[key_map[k]].requires_grad]
    shadow = list(ema["shadow_params"] if isinstance(ema, Mapping) else ema)
    if len(shadow) != len(trainable):
        raise IncompatibleCheckpointError(f"EMA has {len(shadow)} shadow parameters but {type(net).__name__} has "
                                          f"{len(trainable)} trainable ones")
    mismatched = [(f"#{i} {k}", tuple(s.shape), tuple(mapped[key_map[k]].shape))
                  for i, (k, s) in enumerate(zip(trainable, shadow, strict=True))
                  if tuple(s.shape) != tuple(mapped[key_map[k]].shape)]
    _raise_if_bad(net, KeyReport([], [], mismatched), "EMA state")
    return {**sd, **dict(zip(trainable, shadow, strict=True))}


# ---- the original code's checkpoints (``all_modules`` keys); also reachable under their old scoresde.nets names ----


def load_original_state_dict(net: nn.Module, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Load a state dict saved by the original Score SDE code into ``net`` (``load_state_dict(layout='original')``).
    """
    return load_state_dict(net, state_dict, layout="original")


def to_original_state_dict(net: nn.Module, prefix: str = "module.") -> dict[str, Tensor]:
    """``net``'s state dict under the original code's keys (with ``prefix``, ``module.`` by default)."""
    own = net.state_dict()
    return {prefix + theirs: own[ours] for theirs, ours in checkpoint_key_map(net, "original").items()}


def original_ema_state_dict(net: nn.Module, state_dict: Mapping[str, Tensor], ema_state: Mapping[str, Any]
                            ) -> dict[str, Tensor]:
    """The original checkpoint's weights with its EMA ``shadow_params`` substituted (original keys):
    :func:`ema_state_dict` with ``layout='original'``."""
    return ema_state_dict(net, state_dict, ema_state, layout="original")


def load_original_checkpoint(net: nn.Module, checkpoint: Mapping[str, Any], ema: bool = False) -> nn.Module:
    """Load ``checkpoint['model']`` (``ema=True``: its EMA weights) of an original Score SDE checkpoint into
    ``net``; returns ``net``."""
    state = checkpoint["model"]
    if ema:
        state = ema_state_dict(net, state, checkpoint["ema"])
    return load_state_dict(net, state)


def load_original_ema(net: nn.Module, ema_state: Mapping[str, Any] | Sequence[Tensor]) -> nn.Module:
    """Copy an original ``ExponentialMovingAverage`` state (or its ``shadow_params`` list) into ``net``'s trainable
    parameters, in the original ``model.parameters()`` order; buffers are left unchanged. Returns ``net``."""
    return load_state_dict(net, ema_state_dict(net, to_original_state_dict(net, prefix=""), ema_state))
