"""The original Score SDE code's checkpoint layout: its ``all_modules.<i>`` keys and this package's names for them.

The original NCSN++ and DDPM keep their submodules in one ``nn.ModuleList`` (``all_modules``) filled in construction
order; ours name them by resolution and role (EDM's ``'16x16_block3'`` style). :class:`OriginalCheckpointMixin` is
how a network states the correspondence; the loading itself is :mod:`scoresde.checkpoint.state_dict`'s.
"""

from __future__ import annotations

__all__ = ["OriginalCheckpointMixin"]


class OriginalCheckpointMixin:
    """Maps the original ``all_modules.<i>.<...>`` state-dict keys to this network's named submodules.

    Subclasses record, while building, the qualified names of the submodules in the order the original
    appended them to its ``all_modules`` list (``self._original_order``), and name the top-level tensors kept
    under the same key (``_original_top_level``, e.g. the ``sigmas`` buffer).
    """

    _original_order: list[str]
    _original_top_level: tuple[str, ...] = ()

    def original_key_map(self) -> dict[str, str]:
        """``{original key (no 'module.' prefix): key in self.state_dict()}`` for every persistent tensor."""
        own = self.state_dict()  # type: ignore[attr-defined]
        mapping = {name: name for name in self._original_top_level if name in own}
        for index, qualname in enumerate(self._original_order):
            sub = self.get_submodule(qualname)  # type: ignore[attr-defined]
            for key in sub.state_dict():
                mapping[f"all_modules.{index}.{key}"] = f"{qualname}.{key}"
        unmapped = sorted(set(own) - set(mapping.values()))
        if unmapped:  # a construction bug, not a user error
            raise RuntimeError(f"tensors without an original key: {unmapped}")
        return mapping
