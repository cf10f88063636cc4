"""Registry of degradation types, filled by `@register` and by entry points.

Other packages add types without forking perceive-ir by declaring, in their
pyproject.toml:

    [project.entry-points."perceive_ir.degradations"]
    fog = "my_package.fog"          # a module whose import runs @register

or pointing at the class itself (`my_package.fog:Fog`), which is registered
if its module did not do so already.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from degradations.base import Degradation
from degradations.errors import UserError

ENTRY_POINT_GROUP = "perceive_ir.degradations"

# Physical order of a composite chain: scene illumination, weather (CDD-11's
# low light, rain, snow, haze), then the camera: optics, sensor, codec.
# A composite name in any order is applied in this order; types not listed
# (plugins) follow, in the order written.
CANONICAL_ORDER = ("low_light", "rain", "snow", "haze", "blur", "noise", "jpeg")

_REGISTRY: dict[str, type[Degradation]] = {}
_entry_points_loaded = False


def register(cls: type[Degradation]) -> type[Degradation]:
    """Class decorator adding a Degradation subclass to the registry under `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Degradation)):
        raise TypeError(f"@register expects a Degradation subclass, got {cls!r}")
    name = cls.name
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise UserError(f"degradation name must be lower-case letters, digits and '_', got {name!r}")
    existing = _REGISTRY.get(name)
    # The same class defined again (a module reloaded) may re-register; any other class may not.
    same = existing is not None and (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__)
    if existing is not None and existing is not cls and not same:
        raise UserError(f"degradation {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must say which one it is
            raise ImportError(f"degradation plugin {ep.name!r} ({ep.value}) failed to load: {err}") from err
        if isinstance(obj, type) and issubclass(obj, Degradation) and obj.name not in _REGISTRY:
            register(obj)
    _entry_points_loaded = True


def available() -> list[str]:
    """Names of every registered type, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class Composite:
    """An ordered chain of registered types, named `a+b+c` in application order."""

    components: tuple[Degradation, ...]

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.components)

    @property
    def min_size(self) -> int:
        return max(c.min_size for c in self.components)


def canonical_name(name: str) -> str:
    """`haze+low_light` -> `low_light+haze`; a single type is returned as is."""
    parts = [p.strip() for p in name.split("+")]
    if len(parts) == 1:
        return parts[0]
    if len(set(parts)) != len(parts):
        raise UserError(f"composite {name!r} names a type twice")
    rank = {t: i for i, t in enumerate(CANONICAL_ORDER)}
    return "+".join(sorted(parts, key=lambda p: rank.get(p, len(rank))))


def _get_one(name: str) -> Degradation:
    _load_entry_points()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UserError(f"unknown degradation type {name!r}; available: {', '.join(available())}")
    return cls()


def get(name: str) -> Degradation | Composite:
    """The degradation for `name`; a `+` joined name gives a Composite."""
    if not isinstance(name, str) or not name:
        raise UserError(f"degradation type must be a non-empty string, got {name!r}")
    canonical = canonical_name(name)
    if "+" not in canonical:
        return _get_one(canonical)
    return Composite(tuple(_get_one(p) for p in canonical.split("+")))
