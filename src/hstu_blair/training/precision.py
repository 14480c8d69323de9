"""Mixed precision: bf16 autocast for training on GPUs and on CPUs with bf16 instructions.

On a CPU, bf16 matrix products are fast only with AVX512-BF16 or AMX (e.g. about 4x fp32 on a
2-core AMD EPYC with AVX512-BF16); elsewhere PyTorch emulates them and they are several times
*slower* than fp32 (9x measured on an AVX2-only EPYC). ``train.bf16 = true`` is honoured either
way, with a warning when the CPU lacks the instructions, so that the quality of bf16 training can
still be checked on such a machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (Linux ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def autocast_for(device: torch.device, bf16: bool) -> torch.autocast | None:
    """The bf16 autocast context for ``device`` when ``bf16`` is set, else None (fp32).

    Matrix products (linear layers, attention, the text projection, the negatives' logits) run in
    bf16; losses, softmax and normalisations stay in fp32 (PyTorch's autocast lists).
    """
    if not bf16:
        return None
    if device.type == "cpu" and not cpu_has_bf16():
        log.warning(
            "train.bf16 on a CPU without %s: bf16 is emulated and slower than fp32 here",
            " or ".join(BF16_CPU_FLAGS),
        )
    return torch.autocast(device.type, dtype=torch.bfloat16)
