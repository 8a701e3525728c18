"""Image-to-text captioners through ``transformers``: BLIP, Florence-2, GIT and the like.

The folder (or hub id) is loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText``
from ``.safetensors`` weights only (no pickles, no remote code). Four texts of one picture:
the beam-search caption first (the model's best reading), then captions sampled with
nucleus sampling from the job's seed (the same seed gives the same texts), which vary the
wording as Midjourney's four descriptions do.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

MAX_NEW_TOKENS = 60
"""Longest caption, in tokens."""


class VisionTextCaptioner:
    """One ``transformers`` image-to-text model and its processor."""

    def __init__(self, model: Any, processor: Any, *, prompt: str | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.prompt = prompt

    @classmethod
    def load(
        cls, location: str, *, revision: str | None = None, prompt: str | None = None, device: Any = None
    ) -> VisionTextCaptioner:
        """Load from a local folder or a hub id (a hub id downloads: the operator configured it)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(location, revision=revision)
        model = AutoModelForImageTextToText.from_pretrained(location, revision=revision, use_safetensors=True)
        if device is not None:
            model = model.to(device)
        return cls(model, processor, prompt=prompt)

    def _inputs(self, image: Image.Image) -> Any:
        kwargs: dict[str, Any] = {"images": image.convert("RGB"), "return_tensors": "pt"}
        if self.prompt:
            kwargs["text"] = self.prompt
        inputs = self.processor(**kwargs)
        return inputs.to(self.model.device)

    def _decode(self, ids: torch.Tensor, prompt_length: int) -> list[str]:
        # Decoder-only captioners (GIT, Florence-2's decoder with a prompt) echo the prompt.
        if self.prompt and ids.shape[1] > prompt_length and not self.model.config.is_encoder_decoder:
            ids = ids[:, prompt_length:]
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(str(t).split()) for t in texts]

    @torch.no_grad()
    def describe(self, image: Image.Image, *, count: int = 4, seed: int = 0) -> list[str]:
        """``count`` texts: the beam-search caption, then sampled ones (see the module docstring)."""
        inputs = self._inputs(image)
        prompt_length = int(inputs["input_ids"].shape[1]) if "input_ids" in inputs else 0
        texts = self._decode(
            self.model.generate(**inputs, num_beams=3, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=3),
            prompt_length,
        )
        if count > 1:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                sampled = self.model.generate(
                    **inputs,
                    do_sample=True,
                    top_p=0.9,
                    temperature=0.8,
                    num_return_sequences=count - 1,
                    max_new_tokens=MAX_NEW_TOKENS,
                    min_new_tokens=3,
                )
            texts += self._decode(sampled, prompt_length)
        return texts[:count]


def write_tiny_captioner(out: Any, *, seed: int = 0) -> Any:
    """Write a tiny BLIP captioner with random weights (the real classes, test sizes) to ``out``.

    It says random words, not what is in the picture: the offline ``tiny`` model's captioner,
    so that ``/describe`` runs the ``transformers`` path end to end in tests.
    """
    from pathlib import Path

    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    plain = (
        "a an the of in on with and photo picture painting drawing red blue green yellow white black "
        "cat dog fox house tree river mountain snow forest city night sky sun moon flower car boat "
        "small large old bright dark soft"
    )
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *plain.split(" ")]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=64)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    config = BlipConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "bos_token_id": 5,
            "pad_token_id": 0,
            "sep_token_id": 3,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
