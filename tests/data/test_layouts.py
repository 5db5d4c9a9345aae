"""Each layout reader on tiny generated folders; detection; clear errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrrkit.data.layouts import LayoutError, Sample, detect_layout, read_forensynths, read_genimage, read_layout


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(path)
    return path


def _facts(samples: list[Sample], root: Path) -> set[tuple]:
    return {(s.path.relative_to(root).as_posix(), s.label, s.generator, s.split, s.source) for s in samples}


def test_forensynths_generator_folder(tmp_path):
    root = tmp_path / "progan"
    _img(root / "car" / "0_real" / "a.png")
    _img(root / "car" / "1_fake" / "b.png")
    _img(root / "cat" / "1_fake" / "c.jpg")
    (root / "cat" / "1_fake" / "notes.txt").write_text("ignored")
    assert detect_layout(root) == "forensynths"
    assert _facts(read_layout(root), root) == {
        ("car/0_real/a.png", 0, "progan", None, "car"),
        ("car/1_fake/b.png", 1, "progan", None, "car"),
        ("cat/1_fake/c.jpg", 1, "progan", None, "cat"),
    }


def test_forensynths_test_collection_with_classless_generator(tmp_path):
    root = tmp_path / "CNN_synth_testset"
    _img(root / "test" / "progan" / "car" / "0_real" / "a.png")
    _img(root / "test" / "progan" / "car" / "1_fake" / "a.png")
    _img(root / "test" / "deepfake" / "0_real" / "x.png")
    _img(root / "test" / "deepfake" / "1_fake" / "y.png")
    facts = _facts(read_layout(root), root)
    assert facts == {
        ("test/progan/car/0_real/a.png", 0, "progan", "test", "car"),
        ("test/progan/car/1_fake/a.png", 1, "progan", "test", "car"),
        ("test/deepfake/0_real/x.png", 0, "deepfake", "test", None),
        ("test/deepfake/1_fake/y.png", 1, "deepfake", "test", None),
    }
    # the split folder itself as ROOT gives the same generators
    assert {s.generator for s in read_layout(root / "test")} == {"progan", "deepfake"}


def test_forensynths_training_split_of_classes(tmp_path):
    root = tmp_path / "train"
    _img(root / "airplane" / "0_real" / "a.png")
    _img(root / "airplane" / "1_fake" / "a.png")
    samples = read_layout(root)
    assert {(s.generator, s.split, s.source) for s in samples} == {(None, "train", "airplane")}
    assert {s.generator for s in read_layout(root, "forensynths")} == {None}
    assert {s.generator for s in read_forensynths(root, generator="progan")} == {"progan"}


def test_forensynths_as_shipped_train_classes_are_classes_not_generators(tmp_path):
    # CNNDetection: train/val hold ProGAN's LSUN classes, test holds one folder per generator
    root = tmp_path / "CNNDetection"
    _img(root / "train" / "airplane" / "0_real" / "a.png")
    _img(root / "train" / "airplane" / "1_fake" / "b.png")
    _img(root / "train" / "cat" / "1_fake" / "c.png")
    _img(root / "val" / "horse" / "0_real" / "d.png")
    _img(root / "test" / "progan" / "airplane" / "1_fake" / "e.png")
    _img(root / "test" / "stylegan" / "car" / "0_real" / "f.png")
    _img(root / "test" / "whichfaceisreal" / "0_real" / "g.png")
    _img(root / "test" / "whichfaceisreal" / "1_fake" / "h.png")
    _img(root / "test" / "deepfake" / "1_fake" / "i.png")
    assert detect_layout(root) == "forensynths"
    expected_test = {
        ("test/progan/airplane/1_fake/e.png", 1, "progan", "test", "airplane"),
        ("test/stylegan/car/0_real/f.png", 0, "stylegan", "test", "car"),
        ("test/whichfaceisreal/0_real/g.png", 0, "whichfaceisreal", "test", None),
        ("test/whichfaceisreal/1_fake/h.png", 1, "whichfaceisreal", "test", None),
        ("test/deepfake/1_fake/i.png", 1, "deepfake", "test", None),
    }
    assert _facts(read_layout(root), root) == {
        ("train/airplane/0_real/a.png", 0, None, "train", "airplane"),
        ("train/airplane/1_fake/b.png", 1, None, "train", "airplane"),
        ("train/cat/1_fake/c.png", 1, None, "train", "cat"),
        ("val/horse/0_real/d.png", 0, None, "val", "horse"),
        *expected_test,
    }
    # generator= names the training generator the tree leaves unnamed; test generators keep theirs
    named = _facts(read_forensynths(root, generator="progan"), root)
    assert {f for f in named if f[3] != "test"} == {
        ("train/airplane/0_real/a.png", 0, "progan", "train", "airplane"),
        ("train/airplane/1_fake/b.png", 1, "progan", "train", "airplane"),
        ("train/cat/1_fake/c.png", 1, "progan", "train", "cat"),
        ("val/horse/0_real/d.png", 0, "progan", "val", "horse"),
    }
    assert {f for f in named if f[3] == "test"} == expected_test
    # each split folder read on its own gives the same records
    assert _facts(read_layout(root / "val"), root) == {("val/horse/0_real/d.png", 0, None, "val", "horse")}
    assert _facts(read_layout(root / "test"), root) == expected_test
    # one test generator's folder: its children are classes, the generator is its name
    assert _facts(read_layout(root / "test" / "stylegan"), root) == {
        ("test/stylegan/car/0_real/f.png", 0, "stylegan", None, "car")
    }


def test_forensynths_training_split_with_generator_level_and_validation_alias(tmp_path):
    root = tmp_path / "mine"
    _img(root / "train" / "progan" / "car" / "1_fake" / "a.png")  # two levels: <generator>/<class>
    _img(root / "validation" / "car" / "0_real" / "b.png")  # one level below a val split: the class
    _img(root / "train" / "0_real" / "c.png")  # no level: no class, no generator
    assert _facts(read_layout(root), root) == {
        ("train/progan/car/1_fake/a.png", 1, "progan", "train", "car"),
        ("validation/car/0_real/b.png", 0, None, "validation", "car"),
        ("train/0_real/c.png", 0, None, "train", None),
    }


def test_forensynths_unsplit_collection_keeps_generator_folders(tmp_path):
    root = tmp_path / "collection"
    _img(root / "biggan" / "0_real" / "a.png")
    _img(root / "stylegan" / "bedroom" / "1_fake" / "b.png")
    # generator= cannot rename folders that already name their generator
    assert _facts(read_forensynths(root, generator="other", split="test"), root) == {
        ("biggan/0_real/a.png", 0, "biggan", "test", None),
        ("stylegan/bedroom/1_fake/b.png", 1, "stylegan", "test", "bedroom"),
    }


def test_genimage_as_shipped_with_subset_level(tmp_path):
    root = tmp_path / "GenImage"
    sd = root / "stable_diffusion_v_1_4" / "imagenet_ai_0419_sdv4"
    _img(sd / "train" / "ai" / "a.png")
    _img(sd / "train" / "nature" / "n.JPEG")
    _img(sd / "val" / "ai" / "v.png")
    _img(root / "Midjourney" / "imagenet_midjourney" / "val" / "nature" / "m.JPEG")
    _img(root / "BigGAN" / "val" / "ai" / "b.png")  # the two-level form next to the shipped one
    (root / "ADM" / "imagenet_ai_0508_adm" / "train").mkdir(parents=True)  # no label folders: ignored
    assert detect_layout(root) == "genimage"
    assert _facts(read_layout(root), root) == {
        ("stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/ai/a.png", 1, "stable_diffusion_v_1_4", "train", None),
        (
            "stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/train/nature/n.JPEG",
            0,
            "stable_diffusion_v_1_4",
            "train",
            None,
        ),
        ("stable_diffusion_v_1_4/imagenet_ai_0419_sdv4/val/ai/v.png", 1, "stable_diffusion_v_1_4", "val", None),
        ("Midjourney/imagenet_midjourney/val/nature/m.JPEG", 0, "Midjourney", "val", None),
        ("BigGAN/val/ai/b.png", 1, "BigGAN", "val", None),
    }
    assert {s.path.name for s in read_genimage(root, splits=["train"])} == {"a.png", "n.JPEG"}
    # ROOT = one generator's folder: its subset folder cannot be told from a generator folder
    one = root / "stable_diffusion_v_1_4"
    assert detect_layout(one) == "genimage"
    assert {s.generator for s in read_layout(one)} == {"imagenet_ai_0419_sdv4"}
    assert {s.generator for s in read_genimage(one, generator="sdv14")} == {"sdv14"}
    # ROOT = the subset folder itself
    assert {(s.generator, s.split) for s in read_layout(sd)} == {
        ("imagenet_ai_0419_sdv4", "train"),
        ("imagenet_ai_0419_sdv4", "val"),
    }


def test_genimage(tmp_path):
    root = tmp_path / "GenImage"
    _img(root / "sdv14" / "train" / "nature" / "n.png")
    _img(root / "sdv14" / "train" / "ai" / "a.png")
    _img(root / "midjourney" / "val" / "ai" / "m.png")
    _img(root / "midjourney" / "val" / "nature" / "r.JPEG")
    assert detect_layout(root) == "genimage"
    assert _facts(read_layout(root), root) == {
        ("sdv14/train/nature/n.png", 0, "sdv14", "train", None),
        ("sdv14/train/ai/a.png", 1, "sdv14", "train", None),
        ("midjourney/val/ai/m.png", 1, "midjourney", "val", None),
        ("midjourney/val/nature/r.JPEG", 0, "midjourney", "val", None),
    }
    assert {s.split for s in read_layout(root, split="val")} == {"val"}
    assert detect_layout(root / "sdv14") == "genimage"  # one generator's folder
    assert {s.generator for s in read_layout(root / "sdv14")} == {"sdv14"}


def test_diffusionforensics(tmp_path):
    root = tmp_path / "DiffusionForensics"
    _img(root / "train" / "lsun_bedroom" / "real" / "r.png")
    _img(root / "train" / "lsun_bedroom" / "adm" / "f.png")
    _img(root / "test" / "imagenet" / "real" / "r.png")
    _img(root / "test" / "imagenet" / "sdv1" / "f.png")
    _img(root / "test" / "imagenet" / "adm" / "g.png")
    assert detect_layout(root) == "diffusionforensics"
    assert _facts(read_layout(root), root) == {
        ("train/lsun_bedroom/real/r.png", 0, None, "train", "lsun_bedroom"),
        ("train/lsun_bedroom/adm/f.png", 1, "adm", "train", "lsun_bedroom"),
        ("test/imagenet/real/r.png", 0, None, "test", "imagenet"),
        ("test/imagenet/sdv1/f.png", 1, "sdv1", "test", "imagenet"),
        ("test/imagenet/adm/g.png", 1, "adm", "test", "imagenet"),
    }
    assert detect_layout(root / "test") == "diffusionforensics"
    assert {s.split for s in read_layout(root / "test")} == {"test"}


def test_flat_with_generator_subfolders_and_splits(tmp_path):
    root = tmp_path / "mine"
    _img(root / "real" / "r.png")
    _img(root / "fake" / "f.png")
    _img(root / "fake" / "dalle3" / "g.webp")
    assert detect_layout(root) == "flat"
    assert _facts(read_layout(root), root) == {
        ("real/r.png", 0, None, None, None),
        ("fake/f.png", 1, None, None, None),
        ("fake/dalle3/g.webp", 1, "dalle3", None, None),
    }
    split_root = tmp_path / "split"
    _img(split_root / "train" / "real" / "a.png")
    _img(split_root / "test" / "fake" / "b.png")
    assert detect_layout(split_root) == "flat"
    assert {(s.split, s.label) for s in read_layout(split_root)} == {("train", 0), ("test", 1)}
    with pytest.raises(LayoutError, match=r"no samples in split 'val'.*\['test', 'train'\]"):
        read_layout(split_root, split="val")


def test_csv_manifest(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png")
    absolute = _img(tmp_path / "elsewhere" / "c.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        f"path,label,generator,split\nimgs/a.png,real,,train\nimgs/b.png,1,sdxl,test\n{absolute},fake,,\n\n"
    )
    assert detect_layout(manifest) == "csv"
    assert _facts(read_layout(manifest), tmp_path) == {
        ("imgs/a.png", 0, None, "train", None),
        ("imgs/b.png", 1, "sdxl", "test", None),
        ("elsewhere/c.png", 1, None, None, None),
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,label\na.png,0\n", r"missing \['path'\]"),
        ("path,label\nimgs/a.png,maybe\n", r"list.csv:2: label 'maybe'"),
        ("path,label\nimgs/missing.png,0\n", r"list.csv:2: .*missing.png does not exist"),
        ("path,label\n", "no rows"),
        ("path,label\n,1\n", "path cell is empty"),
    ],
)
def test_csv_manifest_errors_name_the_line(tmp_path, text, message):
    _img(tmp_path / "imgs" / "a.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(text)
    with pytest.raises(LayoutError, match=message):
        read_layout(manifest)


def test_empty_unrecognised_and_missing_folders_say_what_was_expected(tmp_path):
    with pytest.raises(LayoutError, match="no such folder"):
        detect_layout(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="the folder is empty(.|\n)*0_real\\|1_fake"):
        read_layout(tmp_path / "empty")
    _img(tmp_path / "odd" / "cats" / "x.png")
    _img(tmp_path / "odd" / "loose.png")
    with pytest.raises(LayoutError, match=r"found sub-folders \['cats'\] and 1 loose image(.|\n)*genimage"):
        read_layout(tmp_path / "odd")
    (tmp_path / "noimgs" / "real").mkdir(parents=True)
    (tmp_path / "noimgs" / "real" / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="flat layout but holds no image files"):
        read_layout(tmp_path / "noimgs")
    with pytest.raises(LayoutError, match="unknown layout"):
        read_layout(tmp_path / "noimgs", "imagenet")


def test_sample_validates_label():
    with pytest.raises(ValueError, match="label must be 0"):
        Sample(Path("x.png"), 2)
    assert Sample("x.png", 1).to_dict() == {
        "path": "x.png",
        "label": 1,
        "generator": None,
        "split": None,
        "source": None,
    }
