"""ChatGLM-6B's architecture (v1.1), written for reading.

One block, top to bottom (``alpha = sqrt(2 * 28)``, DeepNorm-style; see ``residual_weight``)::

    x_ln = input_layernorm(x)
    h    = x_ln * alpha + attention(x_ln)          # the residual carries the *normalized* input
    h_ln = post_attention_layernorm(h)
    out  = h_ln * alpha + mlp(h_ln)                # mlp: Linear -> tanh-GELU -> Linear

Attention uses a fused, head-interleaved ``query_key_value`` projection and 2D rotary positions:
the first half of every head is rotated by ``position_ids``, the second half by
``block_position_ids``. Positions and the prefix/causal mask come from ``[gMASK]`` and ``<sop>``
(see ``glmcourse.masks``), so callers only pass token ids.

P-Tuning v2 (``config.pre_seq_len``, as built into ChatGLM-6B): a ``PrefixEncoder`` gives every layer
``pre_seq_len`` extra key/value vectors that every token may attend to. The base is frozen; only the
prefix trains. The prefix keys are not rotated and the token positions do not move.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from glmcourse import masks
from glmcourse.cli import is_offline, offline_variable
from glmcourse.modeling.configuration_chatglm import ChatGLMConfig

QUANTIZED_LINEARS = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_model_folder(path, alternatives, what: str, required=("config.json",)) -> None:
    """Fail early, naming the missing files, when a local model folder is incomplete (or absent offline)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        missing = [name for name in required if not os.path.isfile(os.path.join(path, name))]
        if not any(os.path.isfile(os.path.join(path, name)) for name in alternatives):
            missing.append(" or ".join(alternatives) + f" ({what})")
        if missing:
            raise FileNotFoundError(
                f"The model folder {path} is missing: {', '.join(missing)}. Copy the complete folder again, or "
                f"rebuild the course model with `python -m glmcourse.tools.build_course_model`."
            )
    elif os.path.isabs(path) or path.startswith(".") or is_offline():
        raise FileNotFoundError(
            f"No model folder at {path!r}" + (f" and {offline_variable()}, so nothing will be downloaded" if
                                              is_offline() else "")
            + ". Pass the path of a downloaded checkpoint folder, or glmcourse.COURSE_MODEL for the course model."
        )


# ----------------------------------------------------------------------------- positions and masks
def positions_and_mask(input_ids: torch.Tensor, config: ChatGLMConfig, padding_mask: torch.Tensor | None = None):
    """2D positions [B, 2, L] and a may-attend mask [B, L, L] for a batch of (left-padded) prompts.

    ``padding_mask`` is the tokenizer's [B, L] attention_mask (1 = real token). Each row's positions
    start at its first real token; padding sees only itself and nobody sees padding.
    """
    gmask, sop, mask = config.gmask_token_id, config.bos_token_id, config.mask_token_id
    position_ids = masks.chatglm_position_ids(input_ids, gmask, sop, mask)
    attend = masks.chatglm_attention_mask(input_ids, sop)
    if padding_mask is None or bool(padding_mask.all()):
        return position_ids, attend
    real = padding_mask.bool().to(input_ids.device)
    offsets = (~real).long().sum(-1, keepdim=True)  # left padding: the count of leading pads
    position_ids[:, 0] = (position_ids[:, 0] - offsets).clamp(min=0)
    position_ids = position_ids * real[:, None]
    eye = torch.eye(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
    return position_ids, (attend & real[:, None, :]) | eye


# ----------------------------------------------------------------------------- 2D rotary embedding
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotary_inv_freq(dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """The rotary frequencies ``1 / base^(2i/dim)``, rounded to fp16 once, as fp32 values.

    ChatGLM-6B's code computes them in fp32 and then stores ``inv_freq.half()``; an fp32 model
    computes its tables from those rounded values. We follow the code (not exact fp32 frequencies)
    so that the course model's weights give the same logits in ChatGLM-6B's own code.
    """
    exact = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    return exact.half().float()


def rotary_tables(position_ids: torch.Tensor, dim: int, dtype, base: float = 10000.0):
    """cos/sin tables [B, 1, L, dim] for both position rows, computed once per forward pass.

    In fp16, ChatGLM-6B's code also forms the angles in fp16, so they are computed in fp16 there too.
    """
    compute = torch.float16 if dtype == torch.float16 else torch.float32
    inv_freq = rotary_inv_freq(dim, base, position_ids.device).to(compute)
    tables = []
    for row in (0, 1):  # position_ids, then block_position_ids
        angles = position_ids[:, row].to(compute)[..., None] * inv_freq  # [B, L, dim/2]
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # [B, 1, L, dim]
        tables.append((angles.cos().to(dtype), angles.sin().to(dtype)))
    return tables


def apply_2d_rotary(x: torch.Tensor, tables) -> torch.Tensor:
    """Rotate each head's first half by position_ids and its second half by block_position_ids
    (GPT-NeoX rotate-half within each half)."""
    halves = x.chunk(2, dim=-1)
    return torch.cat([h * cos + _rotate_half(h) * sin for h, (cos, sin) in zip(halves, tables)], dim=-1)


# ----------------------------------------------------------------------------- the block
class SelfAttention(nn.Module):
    def __init__(self, config: ChatGLMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden, rotary, attend, cache: Cache | None, prefix_key=None, prefix_value=None):
        batch, length, _ = hidden.shape
        # head-interleaved: per head the fused output holds [q | k | v]
        qkv = self.query_key_value(hidden).view(batch, length, self.num_heads, 3 * self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.split(self.head_dim, dim=-1))  # [B, H, L, d]
        q, k = apply_2d_rotary(q, rotary), apply_2d_rotary(k, rotary)  # only the new q and k are rotated
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if prefix_key is not None:  # P-Tuning v2: the (unrotated) prefix goes in front of every key/value
            k, v = torch.cat((prefix_key, k), dim=2), torch.cat((prefix_value, v), dim=2)
        if q.dtype == torch.float32:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        else:  # half precision: take the softmax in fp32, as ChatGLM-6B does
            scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~attend, torch.finfo(torch.float32).min)
            context = scores.softmax(-1).to(v.dtype) @ v
        return self.dense(context.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.inner_hidden_size)
        self.dense_4h_to_h = nn.Linear(config.inner_hidden_size, config.hidden_size)

    def forward(self, hidden):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(hidden), approximate="tanh"))


# ChatGLM-6B's GLMBlock takes ``num_layers=28`` as a default argument and ChatGLMModel never passes
# the config's value, so every model run by that code uses alpha = sqrt(2 * 28) = 7.483, whatever its
# depth. The paper's DeepNorm formula is sqrt(2 * num_layers); the two agree only at 28 layers. We
# follow the code, so that the course model (4 layers) runs unchanged in ChatGLM-6B's own code.
RESIDUAL_LAYERS = 28


def residual_weight() -> float:
    """The residual weight of every block, as ChatGLM-6B's code computes it: ``sqrt(2 * 28)``."""
    return math.sqrt(2 * RESIDUAL_LAYERS)


def paper_residual_weight(num_layers: int) -> float:
    """The paper's DeepNorm weight ``sqrt(2 * num_layers)``, for comparison."""
    return math.sqrt(2 * num_layers)


class GLMBlock(nn.Module):
    def __init__(self, config: ChatGLMConfig, layer_idx: int):
        super().__init__()
        self.alpha = residual_weight()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = SelfAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = MLP(config)

    def forward(self, hidden, rotary, attend, cache, prefix_key=None, prefix_value=None):
        x_ln = self.input_layernorm(hidden)
        hidden = x_ln * self.alpha + self.attention(x_ln, rotary, attend, cache, prefix_key, prefix_value)
        h_ln = self.post_attention_layernorm(hidden)
        return h_ln * self.alpha + self.mlp(h_ln)


# ----------------------------------------------------------------------------- P-Tuning v2
class PrefixEncoder(nn.Module):
    """ChatGLM-6B's P-Tuning v2 prefix: ``pre_seq_len`` rows of ``num_layers * 2 * hidden_size`` values,
    i.e. one key and one value vector per head, per layer and per prefix position.

    Without projection the rows are learned directly (``embedding``). With ``prefix_projection`` a
    ``hidden_size`` embedding goes through ``trans`` = Linear -> Tanh -> Linear. Parameter names
    follow ChatGLM-6B, so a prefix trained there loads here and back.
    """

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.prefix_projection = bool(getattr(config, "prefix_projection", False))
        width = config.num_layers * 2 * config.hidden_size
        if self.prefix_projection:
            self.embedding = nn.Embedding(config.pre_seq_len, config.hidden_size)
            self.trans = nn.Sequential(
                nn.Linear(config.hidden_size, config.hidden_size),
                nn.Tanh(),
                nn.Linear(config.hidden_size, width),
            )
        else:
            self.embedding = nn.Embedding(config.pre_seq_len, width)
        for part in self.modules():
            part._prefix_part = True  # initialized as ChatGLM-6B does (see ChatGLMPreTrainedModel._init_weights)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        """Prefix token ids [B, P] -> [B, P, num_layers * 2 * hidden_size]."""
        out = self.embedding(prefix)
        return self.trans(out) if self.prefix_projection else out


def _check_pre_seq_len(value) -> None:
    # from_pretrained(path, pre_seq_len=...) sets the attribute without ChatGLMConfig.__init__'s check
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"pre_seq_len must be None (no prefix) or a positive int, got {value!r}")


# ----------------------------------------------------------------------------- the models
class ChatGLMPreTrainedModel(PreTrainedModel):
    config_class = ChatGLMConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GLMBlock"]
    _supports_sdpa = True
    # A base checkpoint has no prefix: loading it with pre_seq_len set is the P-Tuning v2 recipe, so the
    # fresh prefix encoder is expected, not worth a "newly initialized" warning.
    _keys_to_ignore_on_load_missing = (r"(^|\.)prefix_encoder\.",)
    # THUDM's checkpoints store each layer's rotary frequencies (a buffer); they are computed here instead
    # (``rotary_inv_freq``, the same fp16-rounded values), so the stored copies are expected, not "unexpected".
    _keys_to_ignore_on_load_unexpected = (r"\.rotary_emb\.inv_freq$",)

    def _init_weights(self, module):
        if type(module).__name__ == "QuantizedLinear":  # only a quantization_bit checkpoint can fill its codes
            from glmcourse.quant import QuantizedCheckpointError

            raise QuantizedCheckpointError(
                f"the checkpoint lacks the int{module.bits} codes or scales of a quantized layer ({module.in_features} "
                f"-> {module.out_features}): the folder is incomplete or not in THUDM's quantized layout. Copy it "
                f"again, or write it anew: glmcourse.quant.save_quantized(float_model, DIR, {module.bits}).")
        if getattr(module, "_prefix_part", False):
            # ChatGLM-6B's _init_weights does nothing, so its prefix keeps PyTorch's defaults:
            # Embedding ~ N(0, 1), Linear as nn.Linear.reset_parameters (kaiming-uniform weight and bias).
            if isinstance(module, nn.Embedding):
                init.normal_(module.weight, mean=0.0, std=1.0)
            elif isinstance(module, nn.Linear):
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                bound = 1 / math.sqrt(module.in_features)
                init.uniform_(module.bias, -bound, bound)
            return
        super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        check_model_folder(pretrained_model_name_or_path, WEIGHT_FILES, "weights")
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True gives a pair
        if getattr(model.config, "pre_seq_len", None) is not None:
            model.freeze_for_prefix_tuning()  # loading replaces the parameters and forgets requires_grad
        return loaded

    def freeze_for_prefix_tuning(self):
        """P-Tuning v2: every parameter outside ``prefix_encoder`` gets ``requires_grad=False``."""
        for name, param in self.named_parameters():
            if "prefix_encoder" not in name.split("."):
                param.requires_grad = False
        return self


class ChatGLMModel(ChatGLMPreTrainedModel):
    """Embeddings, the stack of GLM blocks and the final LayerNorm (no absolute position embedding)."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GLMBlock(config, i) for i in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.gradient_checkpointing = False
        self.pre_seq_len = getattr(config, "pre_seq_len", None)
        _check_pre_seq_len(self.pre_seq_len)
        if self.pre_seq_len is not None:
            # P-Tuning v2, as ChatGLM-6B builds it: freeze everything built so far, then add the prefix.
            for param in self.parameters():
                param.requires_grad = False
            self.prefix_tokens = torch.arange(self.pre_seq_len, device="cpu")  # a plain tensor, not in the state dict
            self.prefix_encoder = PrefixEncoder(config)
            self.dropout = nn.Dropout(0.1)
        self.post_init()

    def get_input_embeddings(self):
        return self.word_embeddings

    def set_input_embeddings(self, value):
        self.word_embeddings = value

    def get_prompt(self, batch_size: int, device, dtype=torch.float32):
        """The P-Tuning v2 prefix: one ``(key, value)`` pair per layer, each [B, heads, pre_seq_len, head_dim].

        As ChatGLM-6B: the encoder output is viewed [B, P, num_layers * 2, heads, head_dim] (layer i's key
        is slot 2i, its value slot 2i+1) and passed through Dropout(0.1), which is active in train mode.
        """
        if self.pre_seq_len is None:
            raise ValueError("get_prompt: this model has no prefix (config.pre_seq_len is None).")
        heads = self.config.num_attention_heads
        head_dim = self.config.hidden_size // heads
        tokens = self.prefix_tokens.to(device).unsqueeze(0).expand(batch_size, -1)
        kv = self.prefix_encoder(tokens).to(dtype)
        kv = kv.view(batch_size, self.pre_seq_len, self.config.num_layers * 2, heads, head_dim)
        kv = self.dropout(kv).permute(2, 0, 3, 1, 4)  # [num_layers * 2, B, heads, P, head_dim]
        return tuple((kv[2 * i], kv[2 * i + 1]) for i in range(self.config.num_layers))

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, cache=None, inputs_embeds=None,
                use_cache=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None or attention_mask is None or attention_mask.dim() == 2:
            if input_ids is None or past:
                raise ValueError(
                    "ChatGLM derives positions and the attention mask from [gMASK]/<sop> in the full prompt. "
                    "With a cache or inputs_embeds, pass position_ids [B, 2, L] and a bool attention_mask "
                    "(use model.generate(), or model.prepare_inputs_for_generation(all_ids, cache=...))."
                )
            derived_pos, attend = positions_and_mask(input_ids, self.config, attention_mask)
            position_ids = derived_pos if position_ids is None else position_ids
        else:
            attend = attention_mask.bool()
        if attend.dim() == 3:
            attend = attend[:, None]  # one mask for every head: [B, 1, Lq, Lk]
        attend = attend.to(inputs_embeds.device)
        position_ids = position_ids.to(inputs_embeds.device)

        prompt = [(None, None)] * len(self.layers)
        if self.pre_seq_len is not None:
            # Recomputed on every forward and never stored in the cache, so the cache holds token keys
            # only and its length stays the number of tokens seen. Every query may attend to every
            # prefix position (padding rows too, as in ChatGLM-6B; they are never read). Positions are
            # those of the tokens alone: the prefix does not shift them.
            prompt = self.get_prompt(inputs_embeds.shape[0], inputs_embeds.device, inputs_embeds.dtype)
            attend = torch.cat((attend.new_ones(*attend.shape[:-1], self.pre_seq_len), attend), dim=-1)

        head_dim = self.config.hidden_size // self.config.num_attention_heads
        rotary = rotary_tables(position_ids, head_dim // 2, inputs_embeds.dtype)
        hidden = inputs_embeds
        for layer, (prefix_key, prefix_value) in zip(self.layers, prompt):
            if self.gradient_checkpointing and self.training:
                hidden = self._gradient_checkpointing_func(layer.__call__, hidden, rotary, attend, cache,
                                                           prefix_key, prefix_value)
            else:
                hidden = layer(hidden, rotary, attend, cache, prefix_key, prefix_value)
        return self.final_layernorm(hidden), cache


class ChatGLMForConditionalGeneration(ChatGLMPreTrainedModel, GenerationMixin):
    """ChatGLM-6B with its tied LM head, ``generate``, ``chat``, ``stream_chat`` and ``quantize``."""

    _tied_weights_keys = {"lm_head.weight": "transformer.word_embeddings.weight"}

    def __init__(self, config: ChatGLMConfig):
        super().__init__(config)
        self.transformer = ChatGLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if getattr(config, "pre_seq_len", None) is not None:
            self.lm_head.weight.requires_grad = False  # tied to the (frozen) word embedding anyway
        self.quantized_bits: int | None = None
        self.post_init()
        if getattr(config, "quantization_bit", None):  # a pre-quantized folder (THUDM's chatglm-6b-int4/int8)
            from glmcourse.quant import empty_quantized_layers

            empty_quantized_layers(self, config.quantization_bit)  # shaped for its codes; loading fills them
            self.quantized_bits = config.quantization_bit

    def get_input_embeddings(self):
        return self.transformer.word_embeddings

    def set_input_embeddings(self, value):
        self.transformer.word_embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, cache=None, inputs_embeds=None,
                labels=None, use_cache=None, past_key_values=None, return_dict=None, **kwargs):
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None and not self.training:
            cache = DynamicCache()
        hidden, cache = self.transformer(input_ids=input_ids, position_ids=position_ids,
                                         attention_mask=attention_mask, cache=cache, inputs_embeds=inputs_embeds)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:].to(logits.device)
            loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None, use_cache=True,
                                      past_key_values=None, **kwargs):
        """Positions and mask from the *whole* sequence so far, then keep only the uncached part.

        A new token thus gets (mask position, previous block position + 1), as in ChatGLM-6B.
        """
        cache = cache if cache is not None else past_key_values
        past = cache.get_seq_length() if cache is not None else 0
        position_ids, attend = positions_and_mask(input_ids, self.config, attention_mask)
        return {
            "input_ids": input_ids[:, past:],
            "position_ids": position_ids[..., past:],
            "attention_mask": attend[:, past:, :],
            "cache": cache,
            "use_cache": use_cache,
        }

    # ------------------------------------------------------------------ ChatGLM-6B's conveniences
    def chat(self, tokenizer, query: str, history=None, **kwargs):
        """``(response, history)``: see ``glmcourse.chat.chat``."""
        from glmcourse.chat import chat

        return chat(self, tokenizer, query, history, **kwargs)

    def stream_chat(self, tokenizer, query: str, history=None, **kwargs):
        """Yields ``(response_so_far, history)``: see ``glmcourse.chat.stream_chat``."""
        from glmcourse.chat import stream_chat

        yield from stream_chat(self, tokenizer, query, history, **kwargs)

    def quantize(self, bits: int, **kwargs):
        """Weight-only INT8/INT4 for the four Linear kinds of every block (see ``glmcourse.quant``)."""
        if bits not in (4, 8):
            raise ValueError(f"quantize(bits={bits!r}): ChatGLM-6B supports bits=4 or bits=8 only.")
        from glmcourse.quant import QuantizedCheckpointError, quantize_model

        loaded = getattr(self.config, "quantization_bit", None)
        if loaded:
            raise QuantizedCheckpointError(
                f"quantize({bits}): this model was loaded already quantized (its config.json has quantization_bit="
                f"{loaded}), so it holds int{loaded} codes, not the float weights quantize needs. Use it as it is "
                f"(leave out quantize / --quantization_bit), or load the fp16 folder and call quantize({bits}) on that."
            )
        quantize_model(self, bits, **kwargs)
        self.quantized_bits = bits
        return self

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers', but a quantized model is refused: its int8 codes would load back as float weights."""
        if self.quantized_bits:
            how = (f"loaded pre-quantized (quantization_bit={self.quantized_bits}; that folder is already its saved "
                   f"form, copy it)" if getattr(self.config, "quantization_bit", None) else
                   f"quantized with quantize({self.quantized_bits})")
            raise ValueError(
                f"This model was {how}; saving it with save_pretrained would store int8 codes "
                f"that load back as float weights (the model would answer noise). Save the float model instead and "
                f"quantize after loading: AutoModel.from_pretrained(path).quantize({self.quantized_bits}); or write "
                f"THUDM's pre-quantized layout (quantization_bit in config.json) from the float model with "
                f"glmcourse.quant.save_quantized(float_model, DIR, {self.quantized_bits}) or "
                f"python -m glmcourse.thudm_format --out DIR --quantization_bit {self.quantized_bits}."
            )
        from glmcourse.modeling.shims import MODEL_AUTO_MAP, write_shims

        self.config.auto_map = MODEL_AUTO_MAP  # so the seed's trust_remote_code=True call finds the shims
        result = super().save_pretrained(save_directory, *args, **kwargs)
        write_shims(save_directory)
        return result
