"""``freqadv serve``: the web viewer from the command line.

    freqadv serve                      # http://127.0.0.1:8080/, this machine only
    freqadv serve --port 0             # a free port; the URL is printed
    python -m FreqAdvSegmentLib.web    # the same, without the main CLI (``main``)

This module imports neither trame nor Slicer until the command runs, so the main ``freqadv``
parser can include it at no cost where the web extras are not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..attacks import registry
from ..web.uploads import DEFAULT_MAX_BYTES, DEFAULT_MAX_VOXELS, Limits

DEVICES = ("auto", "cpu", "cuda")  # as web/params.DEVICES (not imported: that module is the web form)

INSTALL_HINT = 'pip install "trame-slicer[standalone]==2.0.0"'
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _positive_mb(text: str) -> float:
    """A finite size in MB above 0 (1e309 and nan are refused, not taken as no limit)."""
    from ..finite import parse_number

    try:
        value = parse_number(text, "--max-upload-mb")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser(
        "serve", help="web viewer: load a CT, attack, compare in the browser",
        description="Serve the FreqAdvSegment web viewer (trame-slicer): upload a CT or load the sample, "
                    "run an attack with progress and Cancel, compare clean and adversarial results in linked "
                    "slice and 3D views with per-organ Dice/HD95, download the results.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only). The viewer has no login: "
                        "another address lets anyone who reaches it run jobs and read results")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one and prints it)")
    p.add_argument("--max-upload-mb", type=_positive_mb, default=DEFAULT_MAX_BYTES / 2**20,
                   help=f"largest upload in MB (default {DEFAULT_MAX_BYTES // 2**20})")
    p.add_argument("--max-voxels", type=int, default=DEFAULT_MAX_VOXELS,
                   help=f"largest grid an upload may declare, in voxels (default {DEFAULT_MAX_VOXELS:,})")
    p.add_argument("--work-dir", default=None,
                   help="folder for uploads and job results (default: a temporary folder removed on exit)")
    p.add_argument("--method", default="vafa",
                   help="attack chosen when the page opens: a registered attack's name (see `freqadv attack --help`)")
    p.add_argument("--device", choices=list(DEVICES), default="auto", help="device selected when the page opens")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the web viewer until interrupted; 2 with a clear message if the web extras are missing."""
    try:  # trame-slicer: an optional extra, loaded only when the command runs
        from ..web.app import FreqAdvWebApp, ServeConfig
    except ImportError as err:
        print(f"freqadv serve: error: the web viewer needs trame-slicer ({err}); install it with: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    if args.port < 0 or args.port > 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    args.method = registry.get(args.method).name  # ValueError listing the attacks
    if args.host not in _LOOPBACK:
        print(f"freqadv serve: warning: listening on {args.host}: anyone who can reach it can run jobs and "
              "download results (there is no login)", file=sys.stderr)
    limits = Limits(max_bytes=int(args.max_upload_mb * 2**20), max_voxels=args.max_voxels)
    config = ServeConfig(host=args.host, port=args.port, work_dir=Path(args.work_dir) if args.work_dir else None,
                         limits=limits, default_method=args.method, default_device=args.device)
    app = FreqAdvWebApp(config)
    app.server.controller.on_server_ready.add(lambda **_: _announce(config.host, app.server.port))
    # trame parses sys.argv for options of its own; ours are parsed already, so it gets none.
    sys.argv = sys.argv[:1]
    app.start(show_connection_info=False)
    return 0


def _announce(host: str, port: int) -> None:
    """The one line that says where the viewer is (tests read it to find a port chosen by 0)."""
    shown = f"[{host}]" if ":" in host else host
    print(f"freqadv serve: the viewer is at http://{shown}:{port}/ (Ctrl+C stops it)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m FreqAdvSegmentLib.web [options]``: the serve command on its own."""
    parser = argparse.ArgumentParser(prog="python -m FreqAdvSegmentLib.web")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except (ValueError, OSError) as err:
        print(f"freqadv serve: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
