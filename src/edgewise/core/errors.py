"""The exception tree every part raises, so callers catch what they mean.

    EdgewiseError                 message + fix, shown to a user as one line each
    ├── ConfigError               bad settings, options, YAML/TOML files, unknown plug-in names
    │   └── RecipeError           a compression recipe that cannot run
    ├── DatasetError              missing/empty/corrupt data, wrong shapes
    ├── ModelError                unknown architecture, checkpoint that does not fit, export failure
    ├── TargetIncompatible        the model cannot run on the named hardware target
    ├── InvalidBundle             a bundle that is malformed, tampered or incomplete
    │   └── SignatureError        missing, bad, or untrusted signature
    ├── RegistryError             store/registry failures
    │   └── ImmutableVersionError publishing different content under an existing version
    ├── ProtocolError             server/agent protocol failures
    │   └── AuthError             authentication or authorisation refused
    ├── ServiceUnavailable        a server, database or registry could not be reached
    └── InternalError             a bug: an unexpected exception, carried by its type's name
"""

from __future__ import annotations


class EdgewiseError(Exception):
    """Base of every error edgewise raises on purpose.

    `message` says what is wrong, `fix` says what the user can do about it.
    """

    default_fix: str = ""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix if fix is not None else self.default_fix

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled with its fix, not just its message (the fleet server's device process sends errors back).
        return (self.__class__, (self.message, self.fix))

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message} (fix: {self.fix})"
        return self.message


class ConfigError(EdgewiseError):
    default_fix = "check the option or file named above against `--help` and the docs"


class RecipeError(ConfigError):
    default_fix = "run `edgewise compress --list-recipes` and check the step names and parameters"


class DatasetError(EdgewiseError):
    default_fix = "point at an image folder with train/ val/ test/ splits and one folder per class"


class ModelError(EdgewiseError):
    default_fix = "check the architecture name (`edgewise train --list-archs`) and the checkpoint"


class TargetIncompatible(EdgewiseError):
    default_fix = "choose a recipe that produces a precision the target supports (`edgewise targets`)"


class InvalidBundle(EdgewiseError):
    default_fix = "rebuild the bundle with `edgewise bundle create` and sign it again"


class SignatureError(InvalidBundle):
    default_fix = "sign the bundle with a publisher key the device trusts (`edgewise bundle sign`)"


class RegistryError(EdgewiseError):
    default_fix = "check the registry URL and that the bundle reference exists"


class ImmutableVersionError(RegistryError):
    default_fix = "publish the new content under a new version; a published version never changes"


class ProtocolError(EdgewiseError):
    default_fix = "check that the agent and the server run compatible edgewise versions"


class AuthError(ProtocolError):
    default_fix = "use a valid token or enroll the device again"


class ServiceUnavailable(EdgewiseError):
    default_fix = "check that the service is running and the URL is right"


class InternalError(EdgewiseError):
    """An unexpected exception (a bug), carried by its type's name and message: it pickles from any
    process, whatever module the original's class lived in (the fleet server's device process)."""

    default_fix = "report it with the server log"

    def __init__(self, message: str, fix: str | None = None, kind: str = "") -> None:
        super().__init__(message, fix)
        self.kind = kind or message.split(":", 1)[0]

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.message, self.fix, self.kind))

    @classmethod
    def of(cls, error: BaseException) -> InternalError:
        return cls(f"{type(error).__name__}: {error}"[:500], kind=type(error).__name__)
