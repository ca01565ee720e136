"""Average generator snapshots in effective-weight space (run from the repo root).

    python average_snapshots.py OUT.pt SNAPSHOT.pt [SNAPSHOT.pt ...]

Spectral norm stores W_orig and power-iteration vectors; the network uses W_orig / sigma.
This averages W / sigma of every snapshot (as each one computes it in eval mode), stores
the mean as W_orig and re-fits the singular vectors, so eval mode uses mean / ||mean||.
Every spectral-normalised conv of the generator feeds an instance norm, which removes
that scale, so the averaged network computes the averaged weights' function.
"""

import sys

import torch

from ingan.model.checkpoint import load_checkpoint, save_checkpoint, slim_payload
from ingan.model.layers import baked_state_dict

SUFFIX = ".parametrizations.weight.original"

out, paths = sys.argv[1], sys.argv[2:]
checkpoints = [load_checkpoint(p) for p in paths]
baked = [baked_state_dict(c.build_generator()) for c in checkpoints]
mean = {k: (sum(b[k].double() for b in baked) / len(baked)).float() if baked[0][k].is_floating_point() else baked[0][k]
        for k in baked[0]}
generator = checkpoints[-1].build_generator()
tensors = {**dict(generator.named_parameters()), **dict(generator.named_buffers())}
with torch.no_grad():
    for key in generator.state_dict():
        if key.endswith(SUFFIX):
            module = generator.get_submodule(key[: -len(SUFFIX)])
            module.parametrizations.weight.original.copy_(mean[key[: -len(SUFFIX)] + ".weight"])
            matrix = module.parametrizations.weight.original.flatten(1).float()
            module.parametrizations.weight[0]._power_iteration(matrix, 200)
        elif ".parametrizations." not in key:
            tensors[key].copy_(mean[key])
payload = slim_payload(dict(checkpoints[-1].payload)) if checkpoints[-1].has_training_state else dict(checkpoints[-1].payload)
payload["generator"] = {k: v.clone() for k, v in generator.state_dict().items()}
save_checkpoint(out, payload)
