"""Loading from local diffusers folders and single safetensors files, and the errors for bad paths."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from hrrkit.retrospect import (
    AutoencoderRetrospector,
    LatentRetrospector,
    PixelDDIMRetrospector,
    WeightsLoadError,
    WeightsNotFoundError,
)
from hrrkit.retrospect.tiny import tiny_pixel_unet


def test_pipeline_and_model_folders_load_the_same_weights(pixel_pipeline, tmp_path):
    from_pipeline = PixelDDIMRetrospector.from_pretrained(pixel_pipeline, steps=2)
    shutil.copytree(f"{pixel_pipeline}/unet", tmp_path / "unet_only")
    from_model_dir = PixelDDIMRetrospector.from_pretrained(tmp_path / "unet_only", steps=2)
    assert from_pipeline.weights_fingerprint() == from_model_dir.weights_fingerprint()
    assert (
        from_pipeline.weights_fingerprint() == PixelDDIMRetrospector(tiny_pixel_unet(), steps=2).weights_fingerprint()
    )


def test_scheduler_config_is_read_from_the_pipeline(latent_pipeline, tmp_path):
    shutil.copytree(latent_pipeline, tmp_path / "pipe")
    cfg_path = tmp_path / "pipe" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_path.write_text(json.dumps(cfg))
    retro = LatentRetrospector.from_pretrained(tmp_path / "pipe")
    assert retro.chain.prediction_type == "v_prediction"


def test_single_safetensors_with_sidecar_config(tmp_path):
    unet = tiny_pixel_unet(seed=4)
    unet.save_pretrained(tmp_path / "ref")
    save_file(unet.state_dict(), str(tmp_path / "adm.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="config.json was not found"):
        PixelDDIMRetrospector.from_pretrained(tmp_path / "adm.safetensors")
    shutil.copy(tmp_path / "ref" / "config.json", tmp_path / "adm.json")
    loaded = PixelDDIMRetrospector.from_pretrained(tmp_path / "adm.safetensors", steps=2)
    assert loaded.weights_fingerprint() == PixelDDIMRetrospector(unet, steps=2).weights_fingerprint()
    # the config may also be passed explicitly
    (tmp_path / "adm.json").unlink()
    explicit = PixelDDIMRetrospector.from_pretrained(
        tmp_path / "adm.safetensors", config=tmp_path / "ref" / "config.json", steps=2
    )
    assert explicit.weights_fingerprint() == loaded.weights_fingerprint()


def test_single_file_that_does_not_match_its_config(tmp_path):
    unet = tiny_pixel_unet()
    unet.save_pretrained(tmp_path / "ref")
    state = unet.state_dict()
    state.pop("conv_out.weight")
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(WeightsLoadError, match="1 missing keys"):
        PixelDDIMRetrospector.from_pretrained(tmp_path / "m.safetensors", config=tmp_path / "ref")


def test_errors_name_the_problem(tmp_path, latent_pipeline):
    with pytest.raises(WeightsNotFoundError, match="does not exist.*never downloads"):
        LatentRetrospector.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="neither a diffusers pipeline folder"):
        AutoencoderRetrospector.from_pretrained(tmp_path / "empty")
    with pytest.raises(WeightsLoadError, match="UNet2DConditionModel, but a UNet2DModel"):
        PixelDDIMRetrospector.from_pretrained(latent_pipeline)
    broken = tmp_path / "broken"
    shutil.copytree(latent_pipeline, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="no weights"):
        AutoencoderRetrospector.from_pretrained(broken)
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsLoadError, match="pickled checkpoints are not loaded"):
        PixelDDIMRetrospector.from_pretrained(tmp_path / "model.ckpt")
    (tmp_path / "trunc.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(WeightsLoadError, match="not a readable safetensors"):
        PixelDDIMRetrospector.from_pretrained(tmp_path / "trunc.safetensors")


def test_original_format_checkpoint_needs_configs_offline(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(tmp_path / "sd.safetensors"))
    with pytest.raises(WeightsLoadError, match="original-format .* pass config="):
        LatentRetrospector.from_pretrained(tmp_path / "sd.safetensors")
    save_file({"input_blocks.0.0.weight": torch.zeros(1), "time_embed.0.weight": torch.zeros(1)},
              str(tmp_path / "adm.safetensors"))  # fmt: skip
    with pytest.raises(WeightsLoadError, match="guided-diffusion"):
        PixelDDIMRetrospector.from_pretrained(tmp_path / "adm.safetensors")


def test_conditioning_from_file(latent_pipeline, tmp_path):
    emb = torch.randn(5, 8)
    save_file({"encoder_hidden_states": emb}, str(tmp_path / "emb.safetensors"))
    retro = LatentRetrospector.from_pretrained(latent_pipeline, conditioning=tmp_path / "emb.safetensors")
    torch.testing.assert_close(retro.conditioning, emb[None])
    save_file({"x": torch.randn(5, 7)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"cross_attention_dim=8"):
        LatentRetrospector.from_pretrained(latent_pipeline, conditioning=tmp_path / "bad.safetensors")
