# gen_pth.py — makes the .pth fixtures that ErrorAndPthTests.swift reads (run once; outputs are committed):
#   /tmp/pyref/bin/python Tests/TorchTests/Resources/gen_pth.py
# small_state_dict.pth: torch.save({"state_dict": {...}}) with exact, hand-checkable values.
# not_a_dict.pth: torch.save of a list, which the importer must refuse.
import os
import torch

here = os.path.dirname(os.path.abspath(__file__))
state = {
    "a.weight": torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.25, -0.125]], dtype=torch.float32),
    "a.bias": torch.tensor([0.0, -1.5], dtype=torch.float32),
    "b.0.weight": torch.tensor([1, 2, -3, 1 << 40], dtype=torch.int64),
}
torch.save({"state_dict": state}, os.path.join(here, "small_state_dict.pth"))
torch.save([torch.ones(2), torch.zeros(3)], os.path.join(here, "not_a_dict.pth"))
