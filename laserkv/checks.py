"""Validation helpers shared by the frozen configs: each raises ``ConfigError`` naming the
field, the value and what is allowed."""

from __future__ import annotations

from laserkv.errors import ConfigError


def check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    """``value`` must be one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(field, value, "one of " + ", ".join(allowed))


def is_number(value: object) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(field: str, value: object, minimum: int) -> None:
    """``value`` must be an integer (not a bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(field, value, f"an integer >= {minimum}")


def check_odd_kernel(field: str, value: object) -> None:
    """``value`` must be an odd integer >= 1 (a pooling kernel; 1 = no pooling)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        raise ConfigError(field, value, "an odd integer >= 1 (1 = no pooling)")


def check_bool(field: str, value: object) -> None:
    """``value`` must be True or False."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "true or false")


def check_fraction(field: str, value: object, low: float, high: float, closed_high: bool = True) -> None:
    """``value`` must be a number in [low, high] (or [low, high) when ``closed_high`` is False)."""
    inside = is_number(value) and low <= value and (value <= high if closed_high else value < high)  # type: ignore[operator]
    if not inside:
        bracket = "]" if closed_high else ")"
        raise ConfigError(field, value, f"a number in [{low:g}, {high:g}{bracket}")
