"""The laserkv error family: domain failures the CLI turns into one red line and exit code 2."""


class LaserKVError(Exception):
    """Base class of every error laserkv raises on purpose."""


class ConfigError(LaserKVError, ValueError):
    """A configuration field holds a value that is not allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={value!r} is not allowed: {allowed}")


class MissingPackageError(ConfigError):
    """A method needs an optional package that is not installed (e.g. kvpress)."""

    def __init__(self, package: str, setup_command: str, reason: str = "") -> None:
        ConfigError.__init__(self, "package", package, f"installed: {setup_command}")
        detail = f" ({reason})" if reason else ""
        LaserKVError.__init__(self, f"{package} is not installed{detail}; install it with: {setup_command}")


class UnsupportedModelError(LaserKVError):
    """The model cannot be run by the engine (e.g. no rotary positions)."""


class ModelNotAvailableError(LaserKVError):
    """A model could not be found locally (package missing, path absent, hub unreachable)."""
