"""Layer node port parameters for tests that create layers by hand (as the plan does)."""
from __future__ import annotations

from dff_lifecycle.common.ports import PortBinding, STATUS_TYPE, TENSOR_TYPE


def ports(train_in: str, infer_in: str, *, train_out: str = '', infer_out: str = '',
          result: str = '', status: str) -> dict[str, list[str]]:
    """Return {'inputs': [...], 'outputs': [...]} binding these topics ('': port left out)."""
    inputs = [PortBinding('train', train_in, TENSOR_TYPE),
              PortBinding('infer', infer_in, TENSOR_TYPE)]
    outputs = [PortBinding(port, topic, TENSOR_TYPE) for port, topic in
               (('train', train_out), ('infer', infer_out), ('result', result)) if topic]
    outputs.append(PortBinding('status', status, STATUS_TYPE))
    return {'inputs': [b.encode() for b in inputs], 'outputs': [b.encode() for b in outputs]}
