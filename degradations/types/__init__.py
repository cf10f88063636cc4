"""The built-in degradation types; importing this package registers them all."""

from degradations.types import blur, haze, jpeg, low_light, noise, rain, snow

__all__ = ["blur", "haze", "jpeg", "low_light", "noise", "rain", "snow"]
