"""``hrrkit app [--model DIR|NAME]``: the local web app and its JSON API (needs the ``app`` extra); without
``--model`` it opens with the detector shipped in the package (``hrrkit:default``)."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from hrrkit.app.server import AppUnavailableError, serve
    from hrrkit.models.checkpoint import CheckpointError
    from hrrkit.models.config import ConfigError

    try:
        return serve(args.model, host=args.host, port=args.port, device=args.device, max_file_mb=args.max_file_mb,
                     max_pixels=args.max_pixels, save_dir=args.save)
    except AppUnavailableError as exc:
        print(f"hrrkit app: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, ConfigError, FileNotFoundError) as exc:
        print(f"hrrkit app: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from hrrkit.app.limits import DEFAULT_MAX_FILE_MB
    from hrrkit.models.hub import DEFAULT_DETECTOR

    p = subparsers.add_parser(
        "app", help="a local web page (and JSON API) to check images with a detector",
        description="Serve a page where people upload images and read the verdict, score, per-scale scores, "
        "evidence and the detector card, and POST /api/detect for programs (JSON). Binds to 127.0.0.1 unless "
        "--host says otherwise. Needs the app extra: pip install 'hrrkit[app]'. Exit status 2: the model is not "
        "a detector or the extra is missing.",
    )
    p.add_argument("--model", default=DEFAULT_DETECTOR, help="detector folder (model.safetensors + config.json), a "
                   "shipped detector (hrrkit:<name>) or a hub repo id (default: %(default)s, shipped, offline)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the detector runs (default: %(default)s)")
    p.add_argument("--max-file-mb", type=float, default=DEFAULT_MAX_FILE_MB,
                   help="upload size limit per file in MB (default: %(default)s)")
    p.add_argument("--max-pixels", type=int,
                   help="refuse images with more pixels than this (default: the detector's input.max_pixels)")
    p.add_argument("--save", metavar="DIR", help="append every scored row to DIR/results.jsonl (default: keep nothing)")
    p.set_defaults(func=run)
