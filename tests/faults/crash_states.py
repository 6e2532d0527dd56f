"""Crash states a POSIX file system allows after a traced sequence of operations
(in the spirit of ALICE, "All File Systems Are Not Created Equal", OSDI 2014).

Replaying a `TracingOs` trace up to a crash point gives, for every file, its
durable content (as of its last fsync) and its volatile content, and for every
name its durable and volatile binding (a new name or a rename is durable only
once its directory is fsynced). A crash state picks, independently:

- for each name whose binding is not durable yet: the old or the new binding;
- for each file with unsynced data: the durable content, the volatile one, or -
  when only appends happened since the fsync - the durable content plus the
  unsynced bytes cut at a byte boundary (torn).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Inode:
    durable: bytes = b""
    volatile: bytes = b""


@dataclass
class Model:
    inodes: list[Inode] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # volatile bindings
    durable_names: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_directory(cls, root: Path) -> Model:
        """A model whose files are the (durable) files under `root` now."""
        model = cls()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            model.inodes.append(Inode(data, data))
            model.names[str(path)] = model.durable_names[str(path)] = len(model.inodes) - 1
        return model

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, path = op[0], op[1]
        if kind == "create":
            self.inodes.append(Inode())
            self.names[path] = len(self.inodes) - 1
        elif kind == "write":
            _, _, offset, data = op
            inode = self.inodes[self.names[path]]
            head = inode.volatile[:offset].ljust(offset, b"\0")
            inode.volatile = head + data + inode.volatile[offset + len(data) :]
        elif kind == "truncate":
            inode = self.inodes[self.names[path]]
            inode.volatile = inode.volatile[: op[2]]
        elif kind == "fsync":
            if path in self.names:
                inode = self.inodes[self.names[path]]
                inode.durable = inode.volatile
            else:  # a directory: its entries become durable
                for name in set(self.names) | set(self.durable_names):
                    if str(Path(name).parent) != path:
                        continue
                    if name in self.names:
                        self.durable_names[name] = self.names[name]
                    else:
                        del self.durable_names[name]
        elif kind == "rename":
            self.names[op[2]] = self.names.pop(path)
        elif kind == "unlink":
            del self.names[path]
        else:
            raise ValueError(f"unknown operation {kind}")


def _contents(inode: Inode, rng: random.Random, torn_samples: int) -> list[bytes]:
    if inode.durable == inode.volatile:
        return [inode.durable]
    options = [inode.durable, inode.volatile]
    if inode.volatile.startswith(inode.durable):
        extra = inode.volatile[len(inode.durable) :]
        cuts = {len(extra) // 2, 1, len(extra) - 1}
        cuts |= {i + d for i, byte in enumerate(extra) if byte == 0x0A for d in (0, 1)}
        cuts |= {rng.randrange(len(extra)) for _ in range(torn_samples)}
        options += [inode.durable + extra[:cut] for cut in sorted(cuts) if 0 < cut < len(extra)]
    return options


def crash_states(
    model: Model, rng: random.Random, *, torn_samples: int = 6, limit: int = 400
) -> Iterator[dict[str, bytes]]:
    """Every crash state of `model` (path -> content), at most `limit` (sampled beyond)."""
    undecided = sorted(
        name
        for name in set(model.names) | set(model.durable_names)
        if model.names.get(name) != model.durable_names.get(name)
    )
    bindings: list[dict[str, int]] = []
    for choice in itertools.product((False, True), repeat=len(undecided)):
        binding = dict(model.durable_names)
        for name, new in zip(undecided, choice, strict=True):
            target = model.names if new else model.durable_names
            if name in target:
                binding[name] = target[name]
            else:
                binding.pop(name, None)
        bindings.append(binding)
    states: list[dict[str, bytes]] = []
    for binding in bindings:
        names = sorted(binding)
        per_file: Sequence[list[bytes]] = [
            _contents(model.inodes[binding[n]], rng, torn_samples) for n in names
        ]
        for contents in itertools.product(*per_file):
            states.append(dict(zip(names, contents, strict=True)))
    if len(states) > limit:
        states = rng.sample(states, limit)
    yield from states


def materialize(state: dict[str, bytes], traced_root: Path, into: Path) -> None:
    """Writes a crash state of files under `traced_root` into the empty directory `into`."""
    for name, content in state.items():
        target = into / Path(name).relative_to(traced_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
