"""The image loading policy: every good corpus file loads as promised, every bad one gives its typed
error naming the file, random bytes never escape as anything but ImageLoadError."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hrrkit.data import io as image_io
from hrrkit.data.io import (
    DecompressionBombError,
    EmptyFileError,
    ImageLoadError,
    ImageTooSmallError,
    MissingFileError,
    NotAnImageError,
    inspect_image,
    list_image_files,
    load_image,
    to_tensor,
)
from hrrkit.testing.image_corpus import bad_cases, encode, good_cases, write_corpus

GOOD = good_cases()
BAD = bad_cases()


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_good_file_loads_as_rgb_with_promised_size_and_pixels(case, tmp_path):
    path = tmp_path / case.name
    path.write_bytes(case.data())
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == case.size
    if case.top_left is not None:
        assert img.getpixel((0, 0)) == case.top_left
    assert np.asarray(img).dtype == np.uint8
    # the same bytes from memory give the same pixels
    np.testing.assert_array_equal(np.asarray(load_image(case.data())), np.asarray(img))


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_file_raises_its_typed_error_naming_the_file(case, tmp_path):
    path = tmp_path / case.name
    path.write_bytes(case.data())
    with pytest.raises(case.error) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert info.value.reason and info.value.kind
    assert info.value.to_dict() == {"path": str(path), "error": info.value.kind, "reason": info.value.reason}


def test_mixed_folder_good_files_load_while_each_bad_one_reports(tmp_path):
    written = write_corpus(tmp_path)
    loaded, failed = {}, {}
    for path in list_image_files(tmp_path):
        try:
            loaded[path] = load_image(path)
        except ImageLoadError as exc:
            failed[path] = exc
    assert set(loaded) == {p for p, c in written.items() if c.is_good}
    assert set(failed) == {p for p, c in written.items() if not c.is_good}
    for path, exc in failed.items():
        assert isinstance(exc, written[path].error), (path, exc)


def test_errors_survive_pickling_for_dataloader_workers():
    exc = image_io.TruncatedImageError("/data/x.jpg", "the file is truncated")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is image_io.TruncatedImageError and back.path == exc.path and back.reason == exc.reason
    assert isinstance(back, image_io.CorruptImageError) and isinstance(back, ImageLoadError)


def test_missing_path_and_directory_are_missing_file_errors(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        load_image(tmp_path / "absent.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(MissingFileError, match="directory"):
        load_image(tmp_path / "folder.png")
    with pytest.raises(EmptyFileError):
        load_image(io.BytesIO(b""), name="stream")


def test_pixel_limit_is_user_raisable_and_checked_before_decoding():
    data = encode(Image.new("L", (300, 200)), "PNG")
    with pytest.raises(DecompressionBombError, match="60000 pixels exceeds the limit of 50000"):
        load_image(data, max_pixels=50_000)
    assert load_image(data, max_pixels=60_000).size == (300, 200)
    assert load_image(data, max_pixels=None).size == (300, 200)


def test_pixel_limit_from_environment(monkeypatch):
    data = encode(Image.new("L", (300, 200)), "PNG")
    monkeypatch.setenv("HRRKIT_MAX_PIXELS", "1000")
    with pytest.raises(DecompressionBombError):
        load_image(data)
    monkeypatch.setenv("HRRKIT_MAX_PIXELS", "none")
    assert load_image(data).size == (300, 200)
    monkeypatch.setenv("HRRKIT_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="HRRKIT_MAX_PIXELS"):
        load_image(data)


def test_raising_the_limit_above_pillows_own_lifts_pillows_check():
    # a header claiming 20000 x 20000 = 4e8 pixels: above Pillow's built-in 1.8e8 error threshold
    from hrrkit.testing.image_corpus import _png_with_header_size

    data = _png_with_header_size(20_000, 20_000)
    with pytest.raises(DecompressionBombError, match="400000000 pixels exceeds the limit of 100000000"):
        inspect_image(data)
    info = inspect_image(data, max_pixels=None)  # header only: no 1.2 GB decode in a unit test
    assert (info.width, info.height) == (20_000, 20_000)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's global is restored


def test_alpha_background_rule_is_configurable():
    data = encode(Image.new("RGBA", (2, 2), (10, 20, 30, 0)), "PNG")
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(data, background=(0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)
    assert load_image(data, background=None).getpixel((0, 0)) == (10, 20, 30)  # alpha dropped
    with pytest.raises(ValueError, match="background"):
        load_image(data, background=(300, 0, 0))


def test_exif_orientation_can_be_ignored():
    case = next(c for c in GOOD if c.name == "exif_rotated.jpg")
    assert load_image(case.data()).size == (16, 40)
    assert load_image(case.data(), apply_exif=False).size == (40, 16)
    info = inspect_image(case.data())
    assert info.exif_orientation == 6 and (info.width, info.height) == (40, 16)


def test_animated_file_reports_frames_and_loads_the_first():
    case = next(c for c in GOOD if c.name == "animated.gif")
    assert inspect_image(case.data()).n_frames == 3
    img = load_image(case.data())
    assert img.getpixel((5, 5)) == (255, 0, 0)


def test_max_side_downscales_and_min_side_rejects():
    data = encode(Image.new("RGB", (400, 100), (50, 60, 70)), "JPEG", quality=95)
    assert load_image(data, max_side=100).size == (100, 25)
    assert load_image(data, max_side=1000).size == (400, 100)
    with pytest.raises(ImageTooSmallError, match="min_side=101"):
        load_image(data, min_side=101)


def test_grayscale_mode_output():
    data = encode(Image.new("RGB", (3, 2), (255, 255, 255)), "PNG")
    img = load_image(data, mode="L")
    assert img.mode == "L" and img.getpixel((0, 0)) == 255
    with pytest.raises(ValueError, match="mode"):
        load_image(data, mode="CMYK")


def test_to_tensor_range_and_layout():
    array = np.array([[[0, 255, 51]]], dtype=np.uint8)
    tensor = to_tensor(Image.fromarray(array, "RGB"))
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    assert to_tensor(Image.new("L", (4, 2))).shape == (1, 2, 4)


def test_list_image_files_folder_glob_file_and_hidden(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.PNG").write_bytes(b"1")
    (tmp_path / "a" / "y.txt").write_bytes(b"1")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "z.png").write_bytes(b"1")
    (tmp_path / "b.jpg").write_bytes(b"1")
    assert list_image_files(tmp_path) == [tmp_path / "a" / "x.PNG", tmp_path / "b.jpg"]
    assert list_image_files(tmp_path, recursive=False) == [tmp_path / "b.jpg"]
    assert list_image_files([tmp_path / "b.jpg", tmp_path]) == [tmp_path / "a" / "x.PNG", tmp_path / "b.jpg"]
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "w.png").write_bytes(b"1")
    assert list_image_files(str(tmp_path / "**" / "*.png")) == [tmp_path / "a" / "sub" / "w.png"]
    assert list_image_files(str(tmp_path / "*" / "*.PNG"), recursive=False) == [tmp_path / "a" / "x.PNG"]
    assert list_image_files(str(tmp_path / "*.jpg")) == [tmp_path / "b.jpg"]
    assert list_image_files(tmp_path / "a" / "y.txt") == [tmp_path / "a" / "y.txt"]  # explicit file
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_image_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="matches no files"):
        list_image_files(str(tmp_path / "*.gif"))


# ------------------------------------------------------------------------------------------------
# fuzzing: only typed errors may escape
# ------------------------------------------------------------------------------------------------

_SEEDS = [encode(Image.new("RGB", (6, 5), (1, 2, 3)), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


def _load_or_typed_error(data: bytes) -> None:
    try:
        img = load_image(data, name="fuzz", max_pixels=1_000_000)
    except ImageLoadError as exc:
        assert exc.path == "fuzz" and exc.reason
        return
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1


@settings(max_examples=150)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_typed_errors(data):
    _load_or_typed_error(data)


@settings(max_examples=150)
@given(
    seed=st.sampled_from(range(len(_SEEDS))),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=8),
)
def test_fuzz_mutated_real_images_only_typed_errors(seed, cut, flips):
    data = bytearray(_SEEDS[seed])
    for where, xor in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= xor
    _load_or_typed_error(bytes(data[: max(0, int(cut * len(data)) + 8)]))


def test_fuzz_magic_prefixes_with_garbage():
    rng = np.random.default_rng(0)
    for seed in _SEEDS:
        for _ in range(20):
            tail = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
            _load_or_typed_error(seed[: int(rng.integers(1, 40))] + tail)
    with pytest.raises(NotAnImageError):
        load_image(b"\x00" * 10)
