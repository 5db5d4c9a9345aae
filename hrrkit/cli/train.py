"""``hrrkit train CONFIG``: train a detector from a run config (YAML/JSON); resumable."""

from __future__ import annotations

import argparse
import json
import sys


def _parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"hrrkit train: --set {item!r}: expected KEY=VALUE (e.g. train.epochs=3)")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from hrrkit.data.layouts import LayoutError
    from hrrkit.models.checkpoint import CheckpointError
    from hrrkit.models.config import ConfigError
    from hrrkit.train.recipe import load_run_config, run_training
    from hrrkit.train.trainer import NonFiniteLossError

    try:
        config = load_run_config(args.config, _parse_overrides(args.set))
    except (ConfigError, ValueError) as exc:
        print(f"hrrkit train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    try:
        result = run_training(config, resume=not args.restart, progress=not args.no_progress,
                              evaluate=not args.no_test)
    except NonFiniteLossError as exc:
        print(f"hrrkit train: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, LayoutError, CheckpointError) as exc:  # bad data root, backbone, resume state, ...
        print(f"hrrkit train: {exc}", file=sys.stderr)
        return 2
    print(f"best validation AP {result.best_ap:.4f} at epoch {result.best_epoch + 1}; "
          f"{result.epochs_run} epoch(s) run{' (stopped early)' if result.stopped_early else ''}")
    print(f"detector: {result.run_dir / 'best'}")
    if result.skipped:
        print(f"{len(result.skipped)} unreadable file(s) skipped: {result.run_dir / 'skipped_files.json'}")
    return 1 if (args.strict and result.skipped) else 0


def _presets_epilog() -> str:
    """The detector presets a run config can name (``detector: {preset: NAME}``), one per line."""
    from hrrkit.models.presets import preset_descriptions

    rows = preset_descriptions()
    width = max(map(len, rows), default=0)
    lines = [f"  {name:<{width}}  {text}" for name, text in rows.items()]
    return "detector presets (run config `detector: {preset: NAME}`; docs/config.md):\n" + "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a detector from a run config (resumes an interrupted run)",
                              epilog=_presets_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="run config file (YAML or JSON): detector, data, train, output_dir")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. train.epochs=3")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in output_dir")
    p.add_argument("--no-test", action="store_true", help="skip evaluating the test split at the end")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--strict", action="store_true", help="exit 1 when any training image was unreadable")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
