"""The CTranslate2 -> openai-whisper conversion of the bundled models (transcription quality is test_transcribe's)."""

from __future__ import annotations

import pytest
import torch
from whisper.model import ModelDimensions, Whisper

from tasks.errors import ModelFormatError, UnknownBundledModel
from tasks.transcribe.bundled import BUNDLED_MODELS, bundled_model, whisper_checkpoint_path
from tasks.transcribe.ct2 import read_ct2_model, whisper_checkpoint


@pytest.mark.parametrize(("name", "vocabulary", "layers", "heads"), [("tiny.en", 51864, 4, 6), ("base", 51865, 6, 8)])
def test_every_openai_whisper_weight_is_filled_with_the_right_shape(
    name: str, vocabulary: int, layers: int, heads: int
) -> None:
    checkpoint = torch.load(whisper_checkpoint_path(BUNDLED_MODELS[name]), weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    assert (dims.n_vocab, dims.n_text_layer, dims.n_audio_layer, dims.n_text_head, dims.n_mels) == (
        vocabulary,
        layers,
        layers,
        heads,
        80,
    )
    expected = Whisper(dims).state_dict()
    assert {k: v.shape for k, v in checkpoint["model_state_dict"].items()} == {k: v.shape for k, v in expected.items()}
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    model.set_alignment_heads(checkpoint["alignment_heads"])
    assert model.alignment_heads.to_dense().sum() > 0


def test_a_converted_model_is_cached_and_not_converted_again() -> None:
    path = whisper_checkpoint_path(BUNDLED_MODELS["tiny.en"])
    written = path.stat().st_mtime_ns
    assert whisper_checkpoint_path(BUNDLED_MODELS["tiny.en"]) == path
    assert path.stat().st_mtime_ns == written


def test_stacked_projections_are_split_in_query_key_value_order() -> None:
    files = BUNDLED_MODELS["tiny.en"].files()
    variables = read_ct2_model(files["model.bin"])
    state = whisper_checkpoint(files["model.bin"], files["config.json"])["model_state_dict"]
    stacked = variables["decoder/layer_1/self_attention/linear_0/weight"]
    width = stacked.shape[1]
    assert (state["decoder.blocks.1.attn.value.weight"] == stacked[2 * width :]).all()
    cross = variables["decoder/layer_1/attention/linear_1/weight"]
    assert (state["decoder.blocks.1.cross_attn.key.weight"] == cross[:width]).all()
    assert (state["decoder.token_embedding.weight"] == variables["decoder/projection/weight"]).all()  # tied


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ends early"),
        (b"\x05\x00\x00\x00", "version 5"),
        (bytes(BUNDLED_MODELS["tiny.en"].files()["model.bin"][:5000]), "ends early"),
    ],
)
def test_a_damaged_model_file_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ModelFormatError, match=message):
        read_ct2_model(data)


def test_unknown_bundled_names_list_the_bundled_ones() -> None:
    assert bundled_model("tiny.en") is None  # a plain name is the engine's to resolve
    with pytest.raises(UnknownBundledModel, match="no bundled model 'large'; bundled: base, tiny.en"):
        bundled_model("bundled:large")
