"""``swiftcuda annotate``: a local page to draw first masks, propagate them and correct any frame.

- :mod:`~swiftcuda.annotate.frames`: the video's frames, as pictures for the page and decoded for the engine;
- :mod:`~swiftcuda.annotate.session`: objects, given and predicted masks, saved as work proceeds;
- :mod:`~swiftcuda.annotate.propagate`: the engine in a background thread, its states kept for corrections;
- :mod:`~swiftcuda.annotate.grabcut`: a box refined to the object;
- :mod:`~swiftcuda.annotate.export`: masks as ``segment`` writes them, and the overlay video;
- :mod:`~swiftcuda.annotate.server`: the page and its token-protected API (needs ``swiftcuda[gui]``);
- ``static/``: the page, plain JavaScript modules.
"""

from swiftcuda.annotate.frames import VideoFrames
from swiftcuda.annotate.propagate import Propagator
from swiftcuda.annotate.session import AnnotationSession


def __getattr__(name: str):
    # The server needs the gui extra (Starlette); everything else works without it.
    if name in ("create_app", "new_token"):
        from swiftcuda.annotate import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnnotationSession", "Propagator", "VideoFrames", "create_app", "new_token"]
