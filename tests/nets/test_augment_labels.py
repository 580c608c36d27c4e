"""The augmentation-label input of NCSN++/DDPM++ and DDPM (EDM's ``augment_dim``, issue 23 item 3/5).

Checks: no parameter and the exact same weights without ``augment_dim`` (existing checkpoints keep their keys), the
labels enter the noise embedding as ``emb + W a`` before the embedding MLP (read at the MLP's input), ``None`` is the
zero label, and every misuse is one ``ValueError`` naming ``augment_labels``.
"""

from __future__ import annotations

import pytest
import torch

from scoresde.config import apply_overrides, build_network, get_preset
from scoresde.nets import DDPM, NCSNpp
from scoresde.nets.embeddings import get_timestep_embedding

SMALL = dict(image_size=8, in_channels=2, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
             dropout=0.0)


def _net(cls: type, augment_dim: int, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    if cls is DDPM:
        kw = {"num_groups": 8, **kw}
    return cls(**SMALL, augment_dim=augment_dim, **kw).eval()


@pytest.mark.parametrize("cls", [NCSNpp, DDPM])
def test_without_augment_dim_no_parameter_and_same_weights(cls: type) -> None:
    plain, augmented = _net(cls, 0), _net(cls, 9)
    keys = set(plain.state_dict())
    assert not any("augment" in key for key in keys)
    assert set(augmented.state_dict()) == keys | {"augment_embed.weight"}
    for key, value in plain.state_dict().items():  # built last: the other weights draw the same numbers
        assert torch.equal(value, augmented.state_dict()[key]), key
    assert tuple(augmented.augment_embed.weight.shape) == (16, 9)
    # exported under its own name next to the original all_modules keys
    assert augmented.original_key_map()["augment_embed.weight"] == "augment_embed.weight"


@pytest.mark.parametrize("cls", [NCSNpp, DDPM])
def test_labels_are_added_to_the_noise_embedding(cls: type) -> None:
    net = _net(cls, 3)
    with torch.no_grad():
        net.augment_embed.weight.normal_()
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([3.0, 700.0])
    a = torch.tensor([[1.0, -0.5, 0.25], [0.0, 2.0, -1.0]])
    seen: list[torch.Tensor] = []
    handle = net.temb_dense0.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        out = net(x, t, augment_labels=a)
        zero = net(x, t, augment_labels=torch.zeros(2, 3))
        none = net(x, t)
    handle.remove()
    expected = get_timestep_embedding(t, 16) + a @ net.augment_embed.weight.detach().t()
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(zero, none, rtol=0, atol=0)
    assert not torch.equal(out, none)  # the labels reach the output


@pytest.mark.parametrize("cls", [NCSNpp, DDPM])
def test_misuse_is_one_value_error_naming_the_argument(cls: type) -> None:
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([3.0, 700.0])
    with pytest.raises(ValueError, match=r"built without augmentation labels \(model.augment_dim is 0\); got "
                                         "augment_labels"):
        _net(cls, 0)(x, t, augment_labels=torch.zeros(2, 9))
    net = _net(cls, 9)
    with pytest.raises(ValueError, match=r"augment_labels must have shape \(batch=2, augment_dim=9\), got \(2, 8\)"):
        net(x, t, augment_labels=torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"augment_labels must be a floating tensor, got dtype torch\.int64"):
        net(x, t, augment_labels=torch.zeros(2, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match="augment_dim must be an integer >= 0"):
        _net(cls, -1)
    with pytest.raises(ValueError, match="augment_dim=9 needs conditional=True"):
        _net(cls, 9, conditional=False)


def test_config_key_model_augment_dim() -> None:
    values = apply_overrides(get_preset("digits/vp_ddpmpp"), ["model.augment_dim=9"])
    net = build_network(values)
    assert net.augment_dim == 9 and tuple(net.augment_embed.weight.shape)[1] == 9
    assert build_network(get_preset("digits/vp_ddpmpp")).augment_embed is None
