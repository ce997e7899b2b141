"""Write the small intersphinx inventories the docs link against.

The docs build offline (CI has no route to docs.python.org or docs.pytorch.org), so instead of
downloading ``objects.inv`` files, this script writes inventories that list exactly the external
names rnnkit's docs refer to, each pointing at its page in the official documentation. Add a
name here when ``sphinx-build -n`` reports an unresolved external reference, then run
``python docs/_scripts/make_inventories.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "_inventories"

PYTHON = {
    "py:class": {
        "int": "library/functions.html#int",
        "float": "library/functions.html#float",
        "str": "library/stdtypes.html#str",
        "bool": "library/functions.html#bool",
        "bytes": "library/stdtypes.html#bytes",
        "list": "library/stdtypes.html#list",
        "dict": "library/stdtypes.html#dict",
        "tuple": "library/stdtypes.html#tuple",
        "object": "library/functions.html#object",
        "type": "library/functions.html#type",
        "slice": "library/functions.html#slice",
        "range": "library/stdtypes.html#range",
        "os.PathLike": "library/os.html#os.PathLike",
        "pathlib.Path": "library/pathlib.html#pathlib.Path",
        "collections.abc.Callable": "library/collections.abc.html#collections.abc.Callable",
        "collections.abc.Iterable": "library/collections.abc.html#collections.abc.Iterable",
        "collections.abc.Iterator": "library/collections.abc.html#collections.abc.Iterator",
        "collections.abc.Mapping": "library/collections.abc.html#collections.abc.Mapping",
        "collections.abc.Sequence": "library/collections.abc.html#collections.abc.Sequence",
        "collections.abc.Sized": "library/collections.abc.html#collections.abc.Sized",
        "typing.Any": "library/typing.html#typing.Any",
        "typing.Literal": "library/typing.html#typing.Literal",
        "typing.NamedTuple": "library/typing.html#typing.NamedTuple",
        "typing.Protocol": "library/typing.html#typing.Protocol",
        "typing.Self": "library/typing.html#typing.Self",
        "typing.TypeAlias": "library/typing.html#typing.TypeAlias",
        "typing.TypeVar": "library/typing.html#typing.TypeVar",
        "typing.Generic": "library/typing.html#typing.Generic",
        "typing.Union": "library/typing.html#typing.Union",
        "typing.Optional": "library/typing.html#typing.Optional",
        "random.Random": "library/random.html#random.Random",
    },
    "py:exception": {
        name: f"library/exceptions.html#{name}"
        for name in (
            "Exception",
            "BaseException",
            "ValueError",
            "TypeError",
            "RuntimeError",
            "KeyError",
            "IndexError",
            "ImportError",
            "OSError",
            "KeyboardInterrupt",
            "FileNotFoundError",
            "PermissionError",
            "NotImplementedError",
        )
    },
    "py:data": {
        "None": "library/constants.html#None",
        "True": "library/constants.html#True",
        "False": "library/constants.html#False",
        "typing.Any": "library/typing.html#typing.Any",
        "typing.Literal": "library/typing.html#typing.Literal",
    },
    "py:function": {
        "os.replace": "library/os.html#os.replace",
        "os.fsync": "library/os.html#os.fsync",
        "random.getstate": "library/random.html#random.getstate",
        "json.dumps": "library/json.html#json.dumps",
        "functools.partial": "library/functools.html#functools.partial",
    },
}
# Exceptions are classes too: annotations render them with the py:class role.
PYTHON["py:class"].update(PYTHON["py:exception"])

_TORCH_CLASSES = {
    "torch.Tensor": "tensors.html#torch.Tensor",
    "torch.device": "tensor_attributes.html#torch.device",
    "torch.dtype": "tensor_attributes.html#torch.dtype",
    "torch.Generator": "generated/torch.Generator.html",
    "torch._C.Generator": "generated/torch.Generator.html",
    "torch.Size": "size.html#torch.Size",
    "torch.nn.Module": "generated/torch.nn.Module.html",
    "torch.nn.modules.module.Module": "generated/torch.nn.Module.html",
    "torch.nn.RNN": "generated/torch.nn.RNN.html",
    "torch.nn.LSTM": "generated/torch.nn.LSTM.html",
    "torch.nn.GRU": "generated/torch.nn.GRU.html",
    "torch.nn.RNNBase": "generated/torch.nn.RNNBase.html",
    "torch.nn.modules.rnn.RNNBase": "generated/torch.nn.RNNBase.html",
    "torch.nn.Linear": "generated/torch.nn.Linear.html",
    "torch.nn.Parameter": "generated/torch.nn.parameter.Parameter.html",
    "torch.nn.parameter.Parameter": "generated/torch.nn.parameter.Parameter.html",
    "torch.nn.CrossEntropyLoss": "generated/torch.nn.CrossEntropyLoss.html",
    "torch.nn.MSELoss": "generated/torch.nn.MSELoss.html",
    "torch.nn.parallel.DistributedDataParallel": "generated/torch.nn.parallel.DistributedDataParallel.html",
    "torch.nn.utils.rnn.PackedSequence": "generated/torch.nn.utils.rnn.PackedSequence.html",
    "torch.optim.Optimizer": "optim.html#torch.optim.Optimizer",
    "torch.optim.optimizer.Optimizer": "optim.html#torch.optim.Optimizer",
    "torch.optim.Adam": "generated/torch.optim.Adam.html",
    "torch.optim.lr_scheduler.LRScheduler": "generated/torch.optim.lr_scheduler.LRScheduler.html",
    "torch.amp.GradScaler": "amp.html#torch.amp.GradScaler",
    "torch.utils.data.Dataset": "data.html#torch.utils.data.Dataset",
    "torch.utils.data.DataLoader": "data.html#torch.utils.data.DataLoader",
    "torch.utils.data.Sampler": "data.html#torch.utils.data.Sampler",
    "torch.utils.data.Subset": "data.html#torch.utils.data.Subset",
    "torch.utils.data.dataset.Dataset": "data.html#torch.utils.data.Dataset",
    "torch.utils.data.dataloader.DataLoader": "data.html#torch.utils.data.DataLoader",
    "torch.utils.data.sampler.Sampler": "data.html#torch.utils.data.Sampler",
    "torch.export.ExportedProgram": "export.html#torch.export.ExportedProgram",
    "torch.export.exported_program.ExportedProgram": "export.html#torch.export.ExportedProgram",
}
TORCH = {
    "py:class": _TORCH_CLASSES,
    "py:function": {
        "torch.load": "generated/torch.load.html",
        "torch.randperm": "generated/torch.randperm.html",
        "torch.save": "generated/torch.save.html",
        "torch.manual_seed": "generated/torch.manual_seed.html",
        "torch.nn.utils.rnn.pack_padded_sequence": "generated/torch.nn.utils.rnn.pack_padded_sequence.html",
        "torch.nn.utils.rnn.pad_packed_sequence": "generated/torch.nn.utils.rnn.pad_packed_sequence.html",
        "torch.nn.utils.clip_grad_norm_": "generated/torch.nn.utils.clip_grad_norm_.html",
        "torch.distributed.init_process_group": "distributed.html#torch.distributed.init_process_group",
        "torch.distributed.all_reduce": "distributed.html#torch.distributed.all_reduce",
        "torch.export.export": "export.html#torch.export.export",
        "torch.export.save": "export.html#torch.export.save",
        "torch.export.load": "export.html#torch.export.load",
        "torch.compile": "generated/torch.compile.html",
        "torch.jit.trace": "generated/torch.jit.trace.html",
        "torch.compiler.is_compiling": "generated/torch.compiler.is_compiling.html",
    },
    "py:method": {
        "torch.nn.Module.state_dict": "generated/torch.nn.Module.html#torch.nn.Module.state_dict",
        "torch.nn.Module.load_state_dict": "generated/torch.nn.Module.html#torch.nn.Module.load_state_dict",
    },
}

NUMPY = {
    "py:class": {
        "numpy.ndarray": "reference/generated/numpy.ndarray.html",
        "numpy.random.Generator": "reference/random/generator.html#numpy.random.Generator",
        "numpy.typing.ArrayLike": "reference/typing.html#numpy.typing.ArrayLike",
        "numpy.typing.NDArray": "reference/typing.html#numpy.typing.NDArray",
    },
}


def write_inventory(path: Path, project: str, entries: dict[str, dict[str, str]]) -> None:
    """Write one Sphinx version-2 inventory file."""
    lines = [
        f"{name} {role} 1 {uri} -"
        for role, names in sorted(entries.items())
        for name, uri in sorted(names.items())
    ]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: stable\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = zlib.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(header.encode() + body)


def main() -> None:
    """Write the three inventories next to this script's parent folder."""
    OUT.mkdir(exist_ok=True)
    write_inventory(OUT / "python.inv", "Python", PYTHON)
    write_inventory(OUT / "torch.inv", "PyTorch", TORCH)
    write_inventory(OUT / "numpy.inv", "NumPy", NUMPY)


if __name__ == "__main__":
    main()
