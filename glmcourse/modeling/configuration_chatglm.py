"""ChatGLM-6B's configuration, with presets for the real model and the course model."""
from __future__ import annotations

from transformers import PretrainedConfig


class ChatGLMConfig(PretrainedConfig):
    """Hyper-parameters of a ChatGLM-6B-architecture model (field names as in ChatGLM-6B)."""

    model_type = "chatglm"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {  # generic names that transformers and peft look up
        "num_hidden_layers": "num_layers",
        "max_position_embeddings": "max_sequence_length",
        "intermediate_size": "inner_hidden_size",
    }

    def __init__(
        self,
        vocab_size: int = 130528,
        hidden_size: int = 4096,
        num_layers: int = 28,
        num_attention_heads: int = 32,
        inner_hidden_size: int = 16384,
        max_sequence_length: int = 2048,
        layernorm_epsilon: float = 1e-5,
        position_encoding_2d: bool = True,
        bos_token_id: int = 130004,  # <sop>
        eos_token_id: int = 130005,  # <eop>
        mask_token_id: int = 130000,  # [MASK]
        gmask_token_id: int = 130001,  # [gMASK]
        smask_token_id: int | None = None,  # [sMASK]: gmask_token_id + 1 when not given (130002)
        pad_token_id: int = 3,  # <pad>
        initializer_range: float = 0.02,
        use_cache: bool = True,
        tie_word_embeddings: bool = True,
        pre_seq_len: int | None = None,
        prefix_projection: bool = False,
        **kwargs,
    ):
        """``pre_seq_len`` and ``prefix_projection`` switch on ChatGLM-6B's built-in P-Tuning v2: a
        trainable prefix of ``pre_seq_len`` key/value vectors per layer (None = off), optionally
        produced by a two-layer MLP (``prefix_projection=True``). See ``PrefixEncoder``."""
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_attention_heads {num_attention_heads}")
        if (hidden_size // num_attention_heads) % 4:
            raise ValueError("head_dim must be a multiple of 4: 2D rotary splits each head in two rotated halves")
        if pre_seq_len is not None and (isinstance(pre_seq_len, bool) or not isinstance(pre_seq_len, int)
                                        or pre_seq_len < 1):
            raise ValueError(f"pre_seq_len must be None (no prefix) or a positive int, got {pre_seq_len!r}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.inner_hidden_size = inner_hidden_size
        self.max_sequence_length = max_sequence_length
        self.layernorm_epsilon = layernorm_epsilon
        self.position_encoding_2d = position_encoding_2d
        self.mask_token_id = mask_token_id
        self.gmask_token_id = gmask_token_id
        # THUDM's config.json names no [sMASK]; its tokenizer puts it right after [gMASK], at any vocabulary size
        self.smask_token_id = gmask_token_id + 1 if smask_token_id is None else smask_token_id
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.pre_seq_len = pre_seq_len
        self.prefix_projection = bool(prefix_projection)
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


def chatglm_6b_config() -> ChatGLMConfig:
    """The real ChatGLM-6B (v1.1) sizes: 6,173,286,400 parameters."""
    return ChatGLMConfig()


def course_config(**overrides) -> ChatGLMConfig:
    """The course model: the same architecture at a size that trains on two CPU cores.

    Special-token ids default to the course tokenizer's; pass the tokenizer's ids when in doubt. The
    build passes ``vocab_size=len(tokenizer)``; read the shipped model's own sizes with
    ``ChatGLMConfig.from_pretrained(glmcourse.COURSE_MODEL)``.
    """
    sizes = dict(
        vocab_size=4096, hidden_size=256, num_layers=4, num_attention_heads=8, inner_hidden_size=1024,
        max_sequence_length=512, pad_token_id=1, mask_token_id=2, gmask_token_id=3, smask_token_id=4,
        bos_token_id=5, eos_token_id=6,
    )
    sizes.update(overrides)
    return ChatGLMConfig(**sizes)
