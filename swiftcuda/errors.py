"""Errors that describe a problem with what the user gave, not a bug.

The command line prints these as one line (``swiftcuda: error: ...``) and exits non-zero, without a
traceback. Each message names the problem and, where there is one, the fix.
"""

from __future__ import annotations


class SwiftcudaError(Exception):
    """Base class of the errors a user can cause and fix.

    The message names the Python API's arguments (``device='cpu'``); where the command line's
    words differ (``--device cpu``), ``cli_message`` holds them and the command line prints it.
    """

    def __init__(self, message: str, *, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message

    def command_line_message(self) -> str:
        """The message in the command line's words."""
        return self.cli_message or str(self)


class WeightsError(SwiftcudaError, ValueError):
    """A checkpoint that cannot be read, or does not match the model it is loaded into."""


class InputError(SwiftcudaError, ValueError):
    """A frame, mask, video or folder that cannot be used as given."""


class FrameReadError(InputError):
    """A frame of a video that cannot be decoded.

    Attributes:
        frames_done: how many frames before it were segmented (and their masks delivered) when it
            was met; 0 when it was found before the first step.
    """

    def __init__(self, message: str, *, frames_done: int = 0, cli_message: str | None = None) -> None:
        super().__init__(message, cli_message=cli_message)
        self.frames_done = frames_done


class BackendUnavailableError(SwiftcudaError, RuntimeError):
    """An op backend was asked for by name but cannot run here."""
