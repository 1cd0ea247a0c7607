# gen_pth.py — makes the .pth fixtures that ErrorAndPthTests.swift reads (run once; outputs are committed):
#   /tmp/pyref/bin/python Tests/TorchTests/Resources/gen_pth.py      (torch 2.13.0+cpu)
# small_state_dict.pth   torch.save({"state_dict": {...}}): plain dicts; the outer one holds a single
#                        item, which Python pickles with SETITEM.
# module_state_dict.pth  torch.save(module.state_dict()): an OrderedDict carrying `_metadata`.
# two_modules.pth        torch.save({"model": sd, "ema": sd2}): two OrderedDicts sharing memo entries.
# not_a_dict.pth         torch.save of a list, which the importer must refuse.
import os
import torch

here = os.path.dirname(os.path.abspath(__file__))
state = {
    "a.weight": torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.25, -0.125]], dtype=torch.float32),
    "a.bias": torch.tensor([0.0, -1.5], dtype=torch.float32),
    "b.0.weight": torch.tensor([1, 2, -3, 1 << 40], dtype=torch.int64),
}
torch.save({"state_dict": state}, os.path.join(here, "small_state_dict.pth"))


def module(offset):
    m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        m[0].weight.copy_(torch.arange(6, dtype=torch.float32).reshape(3, 2) / 4 + offset)
        m[0].bias.copy_(torch.tensor([-1.0, 0.0, 1.0]) + offset)
        m[1].running_mean.copy_(torch.tensor([0.5, 1.5, 2.5]))
        m[1].running_var.copy_(torch.tensor([1.0, 2.0, 3.0]))
        m[1].num_batches_tracked.fill_(7)
    return m


torch.save(module(0).state_dict(), os.path.join(here, "module_state_dict.pth"))
torch.save({"model": module(0).state_dict(), "ema": module(10).state_dict()}, os.path.join(here, "two_modules.pth"))
torch.save([torch.ones(2), torch.zeros(3)], os.path.join(here, "not_a_dict.pth"))
