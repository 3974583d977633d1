"""Reference solutions for notebooks/00_start_here.ipynb."""


def params_per_layer(hidden_size, inner_hidden_size):
    h, inner = hidden_size, inner_hidden_size
    attention = (h * 3 * h + 3 * h) + (h * h + h)  # query_key_value, dense (weights + biases)
    mlp = (h * inner + inner) + (inner * h + h)  # dense_h_to_4h, dense_4h_to_h
    layernorms = 2 * (2 * h)  # input_layernorm, post_attention_layernorm (weight + bias)
    return attention + mlp + layernorms


def total_params(config):
    embeddings = config.vocab_size * config.hidden_size  # lm_head reuses this matrix
    blocks = config.num_layers * params_per_layer(config.hidden_size, config.inner_hidden_size)
    final_layernorm = 2 * config.hidden_size
    return embeddings + blocks + final_layernorm


def weight_gib(n_params, bits):
    return n_params * bits / 8 / 2**30
