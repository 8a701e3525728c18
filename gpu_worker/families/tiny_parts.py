"""Parts shared by the tiny random-weights pipelines of the families (tokenizer, VAE, text encoder).

The sizes are those of diffusers' own ``get_dummy_components``, so every code path that runs
on a real checkpoint runs on these in seconds on a CPU. Each family's adapter assembles its
pipeline from them (``tiny`` in ``gpu_worker/families/<family>.py``).
"""

from __future__ import annotations

from typing import Any

# Imported from their modules: the package root's lazy ``__init__`` shows type checkers the
# dummy placeholder classes instead of the real ones.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from transformers import CLIPTextConfig, CLIPTokenizer, T5Tokenizer

from gpu_worker.tokenizer import build_clip_tokenizer

# Words that become single tokens, so that common prompts tokenize the way they would with a
# real CLIP vocabulary (one token per word) and prompt-length limits behave realistically.
_PROMPT_WORDS_TEXT = """
    a an the of in on at with and or by from to for under over near behind inside
    cat dog bird fish horse fox wolf owl lion tiger dragon robot knight wizard astronaut
    girl boy man woman person portrait face eyes hair hands child old young
    castle city street house room forest mountain lake river sea ocean beach desert
    island sky cloud clouds sun moon stars space planet night day sunset sunrise
    rain snow fog storm fire water light shadow tree trees flower flowers garden
    red orange yellow green blue purple pink black white gray gold silver brown
    big small tall tiny huge giant little beautiful cute dark bright colorful
    photo photograph painting drawing sketch illustration render watercolor oil
    digital art anime cartoon pixel cinematic realistic photorealistic detailed
    highly intricate sharp focus bokeh lighting dramatic soft volumetric studio
    style by artist trending masterpiece best quality high resolution 4k 8k hdr
    blurry ugly deformed lowres bad anatomy extra fingers watermark text signature
    cropped worst low jpeg artifacts noise
"""
PROMPT_WORDS: tuple[str, ...] = tuple(_PROMPT_WORDS_TEXT.split())

_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def tokenizer() -> CLIPTokenizer:
    """The offline CLIP tokenizer of the tiny models (77-token context, :data:`PROMPT_WORDS`)."""
    return build_clip_tokenizer(PROMPT_WORDS, model_max_length=77)


def t5_tokenizer() -> T5Tokenizer:
    """An offline T5 (unigram) tokenizer: :data:`PROMPT_WORDS` as whole words, else letters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in dict.fromkeys(PROMPT_WORDS)]
    pieces += [(ch, -5.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def qwen_tokenizer() -> Any:
    """An offline Qwen2 tokenizer with a ChatML template: :data:`PROMPT_WORDS` as whole words."""
    from gpu_worker.tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer(PROMPT_WORDS)


def qwen3_config(tokenizer: Any, *, layers: int = 2, max_positions: int = 512) -> Any:
    """A ``Qwen3Config`` of width 16 whose vocabulary and special ids are ``tokenizer``'s
    (the Qwen3 text encoders of the Z-Image and FLUX.2 [klein] tiny pipelines)."""
    from transformers import Qwen3Config

    return Qwen3Config(
        intermediate_size=16,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
    "| join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)
"""The layout of Mistral Small 3's chat template (system prompt, then the instruction), for
messages whose content is a string or a list of ``{"type": "text"}`` parts."""


def mistral_tokenizer() -> Any:
    """An offline tokenizer laid out as Mistral Small 3's (its control tokens and chat template)
    over the byte-level vocabulary of :func:`qwen_tokenizer`: what FLUX.2 [dev]'s pipeline
    encodes prompts with (its own processor, Pixtral's, needs torchvision for pictures, which
    the pipeline never gives it when encoding a prompt)."""
    tokenizer = qwen_tokenizer()
    tokenizer.add_special_tokens({
        "bos_token": "<s>",
        "additional_special_tokens": ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]"],
    })
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer


def mistral3_config(tokenizer: Any, *, layers: int) -> Any:
    """A ``Mistral3Config`` of width 16 (a one-layer Pixtral vision tower) whose vocabulary and
    special ids are ``tokenizer``'s; ``layers`` thin text layers, so that those the FLUX.2
    [dev] pipeline reads (10, 20 and 30) exist."""
    from transformers import Mistral3Config

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    return Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": 16,
                     "intermediate_size": 16, "max_position_embeddings": 1024, "num_attention_heads": 2,
                     "num_hidden_layers": layers, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
                     "sliding_window": None, **ids},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 16, "image_size": 30, "patch_size": 6, "num_channels": 3},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        vision_feature_layer=-1,
        **ids,
    )


def inference_mode(pipe: Any) -> Any:
    """Every module of ``pipe`` in evaluation mode, as ``from_pretrained`` leaves them: modules
    built from a config start in training mode, where T5's dropout makes renders differ."""
    for component in pipe.components.values():
        if hasattr(component, "eval"):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_config(vocab_size: int, *, projection_dim: int | None = None) -> CLIPTextConfig:
    # The token ids match the offline tokenizer (BOS 0, EOS = PAD 1): CLIPTextModel pools
    # the hidden state at the first EOS token, which needs the right id.
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=77,
        vocab_size=vocab_size,
        hidden_act="gelu",
    )
    if projection_dim is not None:
        config.projection_dim = projection_dim
    return config


def vae() -> AutoencoderKL:
    """A 4-channel VAE that downsamples by 2 (64x64 images, 32x32 latents)."""
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )


def scheduler() -> Any:
    # Any: diffusers annotates the pipelines' scheduler argument with an enum of class names.
    return EulerDiscreteScheduler(**_SCHEDULER_CONFIG)


def unet(**config: object) -> UNet2DConditionModel:
    """A two-level UNet on 32x32 latents; ``config`` adds the family's conditioning."""
    base: dict[str, object] = {
        "block_out_channels": (32, 64),
        "layers_per_block": 2,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "norm_num_groups": 32,
    }
    return UNet2DConditionModel(**(base | config))  # type: ignore[arg-type]


def flat_vae(latent_channels: int) -> Any:
    """A one-level VAE that does not downsample (the flow-matching families' tiny models)."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def t5_encoder(vocab_size: int) -> Any:
    """A two-layer T5 encoder of width 32."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )

