"""A linear layer stored as int8 with one scale per output row, computed by ATen's int8 weight-only kernel.

int4 versions keep their LM head in 8 bits, as llama.cpp's Q4_1 files keep theirs in Q8_0: in 4 bits (torchao's
CPU int4, groups of 32) SmolLM2 lost its greedy answer to "What is the capital of France?". torchao 0.18's
``Int8WeightOnlyConfig`` dequantises on CPU; ATen's ``_weight_int8pack_mm`` (gpt-fast's int8 path) reads the
int8 rows directly. SmolLM2's 49152x576 head with bfloat16 inputs on this AVX2 CPU, ms for 1 and 32 rows:

======================  =====  ======
dense bfloat16            3.3      95
dense float32             8.4      26
torchao int8 weight      28       120
``_weight_int8pack_mm``   1.8      33
torchao int4 (g32)        2.1      24
======================  =====  ======
"""

from __future__ import annotations

import torch


class Int8Linear(torch.nn.Module):
    """``x @ (weight_int8 * scales[:, None]).T`` without a bias; ``x`` in the scales' dtype."""

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor) -> None:
        super().__init__()
        # ATen's AVX-512 kernel reads the rows with aligned loads: rows at an 8-byte offset of a safetensors file
        # (an int4 version's stored head) crashed the process; torch's allocator aligns to 64 bytes
        if weight_int8.data_ptr() % 64:
            weight_int8 = weight_int8.clone()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.out_features, self.in_features = weight_int8.shape

    @classmethod
    def quantize(cls, weight: torch.Tensor) -> Int8Linear:
        """Symmetric int8 per output row: the row's largest magnitude maps to 127. The rows are rounded against the
        scales as stored (in the weight's dtype), so each weight is within half a step of its int8 value."""
        rows = weight.detach().float()
        scales = (rows.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127).to(weight.dtype)
        quantized = torch.round(rows / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(quantized, scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).contiguous()
        out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"
