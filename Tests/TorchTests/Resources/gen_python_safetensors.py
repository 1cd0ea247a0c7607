# Made python_written.safetensors (committed) with torch 2.13 + safetensors 0.8:
#   python gen_python_safetensors.py
# SafeTensorsTests.pythonWrittenFileLoads checks these exact values.
import math
import torch
from safetensors.torch import save_file

tensors = {
    "f32": (torch.arange(6, dtype=torch.float32) * 0.5 - 1).reshape(2, 3),
    "f64": torch.tensor([math.pi, -1e-300], dtype=torch.float64),
    "f16": torch.tensor([0.5, -1.0, 65504.0], dtype=torch.float16),
    "bf16": torch.tensor([1.5, -2.25, 3.0e38], dtype=torch.bfloat16),
    "i64": torch.tensor([-(2 ** 40), 0, 7], dtype=torch.int64),
    "i32": torch.tensor([[-5], [2 ** 30]], dtype=torch.int32),
    "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
    "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
    "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "empty": torch.zeros(0, 3),
    "scalar": torch.tensor(42.0),
    "nested.module.weight": torch.ones(2, 2, dtype=torch.float32),
}
save_file(tensors, "python_written.safetensors", metadata={"format": "pt", "made_by": "gen_python_safetensors.py"})
