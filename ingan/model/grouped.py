"""Many independent models as one: grouped convolutions over channel-stacked tensors.

G generators (or discriminators) of the same architecture train together when every
tensor is stacked along channels, [1, G*C, H, W], member by member:

* each conv becomes one conv with `groups=G`: member g's output channels see only member
  g's input channels, through member g's weights;
* the per-channel norm (`GroupNorm(C, C)`, ingan/model/layers.py) becomes
  `GroupNorm(G*C, G*C)`: still one statistic and one affine per channel, hence per member;
* padding, pooling, interpolation and the activations act per channel already;
* spectral norm divides each member's weight by that member's own sigma, from a batched
  power iteration (`GroupedSpectralNorm`).

So one kernel does G members' work, and a loss summed over members gives each member's
parameters exactly their own gradient (their parameters are disjoint). Adam is elementwise,
so one Adam over the stacked parameters is G independent Adams.

Every stacked tensor (weights, biases, norm affines, power-iteration vectors) is the
concatenation of the members' tensors along dim 0 under the member's own state-dict key,
so a member's state is `chunk(G)[g]` of each entry (`member_state_dicts`), and the
modules' forward code is the single model's, unchanged.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ingan.model.layers import SpectralNorm, is_spectral_normed


class GroupedSpectralNorm(SpectralNorm):
    """G members' spectral norms at once: a grouped conv weight [G*O, I, k, k] divided,
    member by member, by each member's largest singular value.

    `_u` is [G*O] and `_v` [G*I*k*k], the members' vectors concatenated (their state-dict
    layout). The maths is SpectralNorm's per member; the matrix-vector products run as one
    batched product, so the result equals the members' up to float summation order.
    """

    def __init__(self, members: Sequence[SpectralNorm]) -> None:
        # SpectralNorm.__init__ would start a new power iteration from a weight; the
        # members' vectors are taken as they are instead (no draw, no iteration).
        nn.Module.__init__(self)
        self.groups = len(members)
        self.eps = members[0].eps
        self.in_place = False
        self.register_buffer("_u", torch.cat([m._u.detach() for m in members]))
        self.register_buffer("_v", torch.cat([m._v.detach() for m in members]))

    @torch.no_grad()
    def _power_iteration(self, matrix: torch.Tensor, steps: int) -> None:
        g = self.groups
        u, v = self._u.view(g, -1), self._v.view(g, -1)
        for _ in range(steps):
            u = F.normalize(torch.bmm(matrix, v.unsqueeze(2)).squeeze(2), dim=1, eps=self.eps)
            v = F.normalize(torch.bmm(u.unsqueeze(1), matrix).squeeze(1), dim=1, eps=self.eps)
        if self.in_place:
            self._u.view(g, -1).copy_(u)
            self._v.view(g, -1).copy_(v)
        else:
            self._u, self._v = u.reshape(-1), v.reshape(-1)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        g = self.groups
        with torch.autocast(device_type=weight.device.type, enabled=False):
            matrix = weight.reshape(g, weight.shape[0] // g, -1).float()
            if self.training:
                self._power_iteration(matrix.detach(), 1)
            u, v = self._u.view(g, 1, -1), self._v.view(g, -1, 1)
            sigma = torch.bmm(u, torch.bmm(matrix, v))  # [G, 1, 1]
            return (matrix / sigma).view_as(weight).to(weight.dtype)


def _original_weight(conv: nn.Conv2d) -> torch.Tensor:
    return conv.parametrizations.weight.original if is_spectral_normed(conv) else conv.weight


def _stacked_conv(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    first, g = convs[0], len(convs)
    weight = _original_weight(first)
    # Built on the meta device: no initialisation (no random draws), the weights are copied in.
    layer = nn.Conv2d(g * first.in_channels, g * first.out_channels, first.kernel_size, stride=first.stride,
                      padding=first.padding, dilation=first.dilation, groups=g * first.groups,
                      bias=first.bias is not None, padding_mode=first.padding_mode, device="meta",
                      dtype=weight.dtype).to_empty(device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(torch.cat([_original_weight(c).detach() for c in convs]))
        if layer.bias is not None:
            layer.bias.copy_(torch.cat([c.bias.detach() for c in convs]))
    if is_spectral_normed(first):
        norms = [c.parametrizations.weight[0] for c in convs]
        grouped = GroupedSpectralNorm(norms).train(first.training)
        # unsafe: the check would call forward, i.e. run a power iteration the members never ran.
        parametrize.register_parametrization(layer, "weight", grouped, unsafe=True)
    return layer.train(first.training)


def _stacked_norm(norms: Sequence[nn.GroupNorm]) -> nn.GroupNorm:
    first, g = norms[0], len(norms)
    if first.num_groups != first.num_channels:
        raise ValueError("only per-channel GroupNorm (num_groups == num_channels) can be stacked")
    weight = first.weight
    layer = nn.GroupNorm(g * first.num_groups, g * first.num_channels, eps=first.eps, affine=first.affine,
                         device="meta", dtype=weight.dtype).to_empty(device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(torch.cat([n.weight.detach() for n in norms]))
        layer.bias.copy_(torch.cat([n.bias.detach() for n in norms]))
    return layer.train(first.training)


def stack_modules(members: Sequence[nn.Module]) -> nn.Module:
    """One module computing all `members` on channel-stacked input (see the module docstring).

    The result is a copy of the first member whose convs and norms are replaced by stacked
    ones; the members are left untouched. They must share one architecture, and hold no
    other parameters or buffers than convs (optionally spectral-normed) and per-channel
    GroupNorms have, which is true of InGAN's generator and discriminator.
    """
    if not members:
        raise ValueError("stack_modules needs at least one member")
    tables = [dict(m.named_modules()) for m in members]
    names = list(tables[0])
    if any(list(t) != names for t in tables[1:]):
        raise ValueError("the members do not share one architecture")
    stacked = copy.deepcopy(members[0])
    replaced: list[str] = []
    for name in names:
        if any(name.startswith(done + ".") for done in replaced):
            continue  # inside a conv that was replaced already (its parametrisation)
        leaves = [t[name] for t in tables]
        if isinstance(leaves[0], nn.Conv2d):
            new: nn.Module = _stacked_conv(leaves)
        elif isinstance(leaves[0], nn.GroupNorm):
            new = _stacked_norm(leaves)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(stacked.get_submodule(parent_name) if parent_name else stacked, child, new)
        replaced.append(name)
    _check_layout(stacked, members)
    return stacked


def _check_layout(stacked: nn.Module, members: Sequence[nn.Module]) -> None:
    """Every stacked state entry is the members' entries concatenated (what unstacking assumes)."""
    own = stacked.state_dict()
    first = members[0].state_dict()
    if list(own) != list(first):
        raise ValueError("stacking changed the state-dict keys")
    for key, value in first.items():
        if own[key].shape[0] != len(members) * value.shape[0] or own[key].shape[1:] != value.shape[1:]:
            raise ValueError(f"'{key}' cannot be stacked member by member along dim 0 ({tuple(value.shape)})")


def member_state_dicts(stacked: nn.Module, groups: int) -> list[dict[str, torch.Tensor]]:
    """Each member's state dict (the single model's keys and shapes), detached copies."""
    state = stacked.state_dict()
    return [{k: v.detach().chunk(groups)[g].clone() for k, v in state.items()} for g in range(groups)]


def stack_optimizer_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Members' Adam state dicts (same parameter order) as one over stacked parameters.

    The step counters must agree: members of a group take every step together.
    """
    first = states[0]
    stacked: dict[int, dict[str, Any]] = {}
    present = [bool(s["state"]) for s in states]
    if any(present) and not all(present):
        raise ValueError("some members have optimiser state and others none")
    for index, entry in first["state"].items():
        merged: dict[str, Any] = {}
        for key, value in entry.items():
            values = [s["state"][index][key] for s in states]
            if key == "step":
                if any(float(v) != float(value) for v in values):
                    raise ValueError(f"the members' optimisers took different numbers of steps "
                                     f"({sorted({float(v) for v in values})})")
                merged[key] = value.clone() if isinstance(value, torch.Tensor) else value
            else:
                merged[key] = torch.cat(values)
        stacked[index] = merged
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


def unstack_optimizer_state(state: dict[str, Any], groups: int, member: int) -> dict[str, Any]:
    """One member's share of a stacked optimiser's state dict."""
    entries = {
        index: {key: (value.detach().clone() if key == "step" else value.detach().chunk(groups)[member].clone())
                if isinstance(value, torch.Tensor) else value for key, value in entry.items()}
        for index, entry in state["state"].items()
    }
    return {"state": entries, "param_groups": copy.deepcopy(state["param_groups"])}
