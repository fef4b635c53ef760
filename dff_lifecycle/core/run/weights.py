"""Per-layer weight files: one path rule, atomic writes, safe loads."""
import io
import os
from pathlib import Path
import tempfile
from typing import Any, BinaryIO, Callable, Union

import torch

PathLike = Union[str, os.PathLike]


class WeightFileError(ValueError):
    """A weight file is missing, unreadable, corrupt or not a state dict."""


def layer_weight_path(weight_dir: PathLike, model: str, layer_index: int,
                      shard: tuple[int, int] = (0, 1), replica: int = 0) -> Path:
    """
    `<weight_dir>/<model>/layer_<i>.pt`; shard k of n of a split layer: `..._<k>of<n>.pt`.

    Replica k > 0 of a replicated layer: `layer_<i>_replica<k>.pt` (replica 0 keeps the
    layer's own name: replicas end a run with equal weights, which a later run of the
    layer unreplicated loads).
    """
    if not model or model in ('.', '..') or '/' in model or os.sep in model:
        raise ValueError(f'model name must be a plain directory name, got {model!r}')
    if isinstance(layer_index, bool) or not isinstance(layer_index, int) or layer_index < 0:
        raise ValueError(f'layer_index must be an int >= 0, got {layer_index!r}')
    index, count = shard
    if replica > 0:
        return Path(weight_dir) / model / f'layer_{layer_index}_replica{replica}.pt'
    if count > 1:
        return Path(weight_dir) / model / f'layer_{layer_index}_{index}of{count}.pt'
    return Path(weight_dir) / model / f'layer_{layer_index}.pt'


def save_state_atomic(path: PathLike, state: dict[str, Any]) -> None:
    """Write `state` so that readers see the old file or the complete new one, never a torn one."""
    _write_atomic(path, lambda file: torch.save(state, file))


def save_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Install a weight file received as bytes (a checkpoint copy), atomically."""
    _write_atomic(path, lambda file: file.write(data))


def _write_atomic(path: PathLike, write: Callable[[BinaryIO], Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name in the same directory: os.replace is atomic only within a
    # file system, and unique names keep concurrent writers from clobbering each other.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as tmp_file:
            write(tmp_file)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def load_state_bytes(data: bytes, what: str = 'checkpoint') -> dict[str, Any]:
    """Load a state dict from a weight file's bytes, as safely as `load_state`."""
    try:
        state = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001 - many types for bad bytes; report them as one
        raise WeightFileError(f'cannot load {what}: {error}') from error
    if not isinstance(state, dict):
        raise WeightFileError(f'{what} holds a {type(state).__name__}, not a dict')
    return state


def load_state(path: PathLike) -> dict[str, Any]:
    """Load a state dict on the CPU without unpickling arbitrary objects."""
    path = Path(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch.load raises many types for bad files; report them as one
        raise WeightFileError(f'cannot load weight file {path}: {error}') from error
    if not isinstance(state, dict):
        raise WeightFileError(f'weight file {path} holds a {type(state).__name__}, not a dict')
    return state


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; best effort because not every platform can open directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
