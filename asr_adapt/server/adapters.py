"""Profiles' adapters resident on one shared base model: PEFT named adapters, loaded once
each, the least recently used deleted when more than ``capacity`` are wanted.

The adapters stay unmerged (a merged adapter changes the weights every other request reads):
a batch names each row's adapter (PEFT's ``adapter_names``, ``"__base__"`` for the plain
model), and one call at a time can make one adapter the active one. Only the thread that
runs the model touches this object (:mod:`asr_adapt.server.batching`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from peft import PeftModel

from asr_adapt.models.base import LoadedModel
from asr_adapt.profiles.info import ProfileError
from asr_adapt.profiles.personal import ADAPTER_LOAD_ERRORS

#: PEFT's name for "no adapter" in ``adapter_names``.
BASE = "__base__"


@dataclass(frozen=True)
class AdapterKey:
    """One adapter version of one profile: a profile adapted again is a new key (its new
    adapter is loaded, the old one ages out)."""

    profile: str
    folder: str


class ResidentAdapters:
    """The adapters on ``loaded``'s model. ``loaded.model`` becomes a PeftModel when the first
    adapter arrives and stays one (with no adapter named, it computes the plain model)."""

    def __init__(self, loaded: LoadedModel, capacity: int) -> None:
        self.loaded = loaded
        self.capacity = capacity
        self._names: OrderedDict[AdapterKey, str] = OrderedDict()
        self._peft: PeftModel | None = None
        self._serial = 0
        #: Counters for the operator (and the tests): adapters loaded and evicted so far.
        self.loads = 0
        self.evictions = 0

    def resident(self) -> list[AdapterKey]:
        """Resident adapters, the least recently used first."""
        return list(self._names)

    @property
    def has_adapters(self) -> bool:
        """Whether the model is a PeftModel yet (then batches name each row's adapter)."""
        return self._peft is not None

    def ensure(self, keys: Iterable[AdapterKey | None]) -> dict[AdapterKey | None, str]:
        """Make the adapters of ``keys`` resident (at most ``capacity`` distinct ones);
        return each key's PEFT adapter name (``None``, the base model: ``"__base__"``)."""
        wanted = [key for key in dict.fromkeys(keys) if key is not None]
        if len(wanted) > self.capacity:
            raise ValueError(f"{len(wanted)} adapters wanted at once, {self.capacity} fit")
        for key in wanted:
            if key in self._names:
                self._names.move_to_end(key)
        for key in wanted:
            if key not in self._names:
                self._make_room(keep=set(wanted))
                self._names[key] = self._load(key)
        names: dict[AdapterKey | None, str] = {key: self._names[key] for key in wanted}
        names[None] = BASE
        return names

    def _load(self, key: AdapterKey) -> str:
        self._serial += 1
        name = f"adapter{self._serial}"  # profile names may hold '.', which PEFT's module keys may not
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.loaded.model, key.folder, adapter_name=name)
                self.loaded.model = self._peft
            else:
                self._peft.load_adapter(key.folder, adapter_name=name)
        except ADAPTER_LOAD_ERRORS as error:
            if self._peft is not None and name in self._peft.peft_config:
                self._peft.delete_adapter(name)
            raise ProfileError(f"the adapter of profile '{key.profile}' cannot be loaded "
                               f"({str(error).splitlines()[0][:160] if str(error) else type(error).__name__})") from None
        self._peft.eval()
        self.loads += 1
        return name

    def _make_room(self, keep: set[AdapterKey]) -> None:
        while len(self._names) >= self.capacity:
            victim = self._names.pop(next(key for key in self._names if key not in keep))
            if self._peft.active_adapter == victim and self._names:
                # (PEFT would pick another itself, with a warning each time)
                self._peft.set_adapter(next(iter(self._names.values())), inference_mode=True)
            self._peft.delete_adapter(victim)
            self.evictions += 1

    @contextmanager
    def active(self, key: AdapterKey | None) -> Iterator[None]:
        """Run the model with ``key``'s adapter alone (None: the plain base model)."""
        if key is None:
            if self._peft is None:
                yield
            else:
                with self._peft.disable_adapter():
                    yield
            return
        name = self.ensure([key])[key]
        self._peft.set_adapter(name, inference_mode=True)
        yield


__all__ = ["AdapterKey", "BASE", "ResidentAdapters"]
