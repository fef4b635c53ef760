"""
Torch tensors to and from the float32 numpy buffers the wire carries.

No copy where the memory allows. torch is imported where it is used: ROS-only
processes (tools, the launcher) never pay its ~2 s import.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch


def to_numpy(tensor: 'torch.Tensor') -> np.ndarray:
    """
    Return `tensor` as a float32 CPU numpy array.

    It shares the tensor's memory when that already is a contiguous float32 CPU tensor
    (otherwise one conversion copy).
    """
    import torch
    return tensor.detach().to(device='cpu', dtype=torch.float32).contiguous().numpy()


def from_numpy(array: np.ndarray, device: Union['torch.device', str]) -> 'torch.Tensor':
    """
    Return `array` as a float32 tensor on `device`.

    It shares `array`'s memory for a writable, contiguous float32 array and a CPU device.
    """
    import torch
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not array.flags.writeable:  # torch cannot safely share a read-only buffer
        array = array.copy()
    return torch.from_numpy(array).to(device)
