"""``swiftcuda annotate``: a page in the browser to draw the first masks, propagate them and correct any frame."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import webbrowser
from pathlib import Path

from swiftcuda.cli._arguments import add_engine_arguments, engine_options, notify
from swiftcuda.errors import InputError

HELP = "draw masks in the browser, propagate them through a video, correct any frame, export"
GUI_EXTRA = "swiftcuda annotate needs the gui extra: pip install 'swiftcuda[gui]' (Starlette and uvicorn)"
SESSION_FOLDER = "session"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help=HELP,
        description=(
            "Open a page in the browser, served from this machine, to annotate INPUT (a folder of frames or a "
            "video file): draw the objects on a frame (a box refined by GrabCut, a brush, a polygon), propagate "
            "them through the video with the engine, correct any frame and propagate again from it, and export "
            "the masks (indexed PNGs as `swiftcuda segment` writes them) and an overlay video into --out. The "
            "session is saved in --out as you work: run the same command again to carry on."
        ),
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="folder of frames (jpg/png) or a video file")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the session and the exports (default: INPUT's name + '-annotate' in the current folder)",
    )
    parser.add_argument("--port", type=int, default=0, metavar="N", help="port to listen on (default: a free one)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--no-browser", action="store_true", help="print the page's address without opening a browser")
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def build_segmenter(args: argparse.Namespace):
    """The engine the options ask for (the one place annotate builds it)."""
    from swiftcuda.engine import build_segmenter as build

    return build(engine_options(args), notify=notify)


def default_out(source: Path) -> Path:
    name = source.resolve().name
    return Path(f"{Path(name).stem if source.is_file() else name}-annotate")


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_gui() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise InputError(GUI_EXTRA) from None


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one).

    Raises:
        InputError: the address cannot be used (the port is taken, or the host is not this machine's).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(64)
    except OSError as error:
        raise InputError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): pass another --port (0: a free one) or --host"
        ) from None
    return listener


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def page_address(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/?token={token}"


def run(args: argparse.Namespace) -> int:
    _check_gui()
    import uvicorn
    from tqdm import tqdm

    from swiftcuda.annotate import AnnotationSession, Propagator, VideoFrames, create_app, new_token

    out = args.out if args.out is not None else default_out(args.input)
    if not args.input.exists():
        raise InputError(f"input not found: {args.input}")
    if _is_within(args.input, out) or _is_within(out, args.input):
        raise InputError(f"--out {out} and the input {args.input} overlap: choose an --out outside the input")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: choose a folder")
    folder = out / SESSION_FOLDER
    AnnotationSession.check_owner(folder, args.input)
    listener = _listen(args.host, args.port)  # first: a taken port fails before the slow parts
    try:
        with tqdm(unit="frame", desc="reading frames", disable=None, leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total or None
                bar.update(done - bar.n)

            frames = VideoFrames(args.input, folder / "pictures", progress=progress)
        session = AnnotationSession.open(folder, frames)
        propagator = Propagator(session, build_segmenter(args))
        token = new_token()
        address = page_address(args.host, listener.getsockname()[1], token)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"swiftcuda: listening on {args.host}: anyone who can reach this machine and has the address can use the page",
                file=sys.stderr,
            )
        print(f"swiftcuda annotate: {len(frames)} frames of {frames.size[1]}x{frames.size[0]}, session in {folder}")
        print(f"open {address}   (Ctrl-C stops; the session is saved as you work)", flush=True)
        if not args.no_browser and _has_display():
            webbrowser.open(address)
        app = create_app(session, propagator, token, out)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        try:
            server.run(sockets=[listener])
        except KeyboardInterrupt:
            pass  # Ctrl-C is how the server is stopped (uvicorn raises it again once it has shut down)
        finally:
            propagator.stop(wait=True)
            session.save()
    finally:
        listener.close()
    print(f"swiftcuda annotate: session saved in {folder}")
    return 0
