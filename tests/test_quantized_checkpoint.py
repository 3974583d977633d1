"""Pre-quantized folders in THUDM's chatglm-6b-int4/int8 layout: written, loaded through
``AutoModel.from_pretrained`` without running folder code, equal to ``quantize(bits)`` in memory; the
refusals; LoRA (peft) and the P-Tuning v2 command on an INT4 folder.

The fixtures are the shipped course model saved in fp16 (the "fp16 folder") and ``quant.save_quantized``
of it; each load takes about a second.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import glmcourse
from glmcourse import quant

IDS = torch.tensor([[20, 31, 42, 53, 64, 75, 3, 5, 86, 97], [101, 112, 123, 134, 145, 156, 3, 5, 167, 178]])


def auto_model(path, dtype):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), dtype=dtype).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{"fp16": folder, 4: INT4 folder, 8: INT8 folder}; the quantized ones also hold the tokenizer and a
    quantization.py that would leave a marker file if anything ran it."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("quantized")
    fp32 = auto_model(glmcourse.COURSE_MODEL, torch.float32)
    fp32.half().save_pretrained(root / "fp16")
    tokenizer = AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)
    tokenizer.save_pretrained(root / "fp16")
    out = {"fp16": root / "fp16", "root": root}
    fp16 = auto_model(root / "fp16", torch.float16)
    for bits in (4, 8):
        folder = quant.save_quantized(fp16, root / f"int{bits}", bits)
        tokenizer.save_pretrained(folder)
        marker = root / f"ran-int{bits}"
        (folder / "quantization.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
        out[bits] = folder
    return out


# ---------------------------------------------------------------------------------------------- the layout
@pytest.mark.parametrize("bits", [4, 8])
def test_folder_holds_thudm_layout_with_the_expected_codes(folders, bits):
    config = json.loads((folders[bits] / "config.json").read_text(encoding="utf-8"))
    assert config["quantization_bit"] == bits and "auto_map" not in config
    state = load_file(folders[bits] / "model.safetensors")
    float_state = load_file(folders["fp16"] / "model.safetensors")
    qmax = 2 ** (bits - 1) - 1
    names = [k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale")]
    assert len(names) == 4 * config["num_layers"]
    assert {n.split(".", 3)[3] for n in names} == set(quant.QUANTIZED_LINEARS)
    for name in names:
        w = float_state[f"{name}.weight"]
        assert w.dtype == torch.float16
        # THUDM's rule, computed independently here: fp16 scale per row, codes round(w / scale) in fp16
        scale = (w.abs().amax(-1) / qmax).half()
        codes = torch.round(w / scale[:, None]).to(torch.int8)
        assert torch.equal(state[f"{name}.weight_scale"], scale) and state[f"{name}.weight_scale"].dtype == torch.float16
        stored = state[f"{name}.weight"]
        assert stored.dtype == torch.int8
        if bits == 8:
            assert torch.equal(stored, codes)
        else:  # two codes per byte, the even column in the high nibble (byte arithmetic, not quant.pack_int4)
            u = codes.numpy().astype("uint8")
            packed = ((u[:, 0::2] << 4) | (u[:, 1::2] & 0x0F)).astype("uint8").view("int8")
            assert stored.shape == (w.shape[0], w.shape[1] // 2)
            assert torch.equal(stored, torch.from_numpy(packed))
        assert torch.equal(state[f"{name}.bias"], float_state[f"{name}.bias"])
    word = "transformer.word_embeddings.weight"
    assert torch.equal(state[word], float_state[word])  # everything else stays fp16, unchanged


# ---------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("bits", [4, 8])
def test_loaded_folder_equals_quantize_in_memory(folders, bits):
    loaded16 = auto_model(folders[bits], torch.float16)
    qkv = loaded16.transformer.layers[0].attention.query_key_value
    assert isinstance(qkv, quant.QuantizedLinear) and qkv.bits == bits and loaded16.quantized_bits == bits
    assert qkv.weight.dtype == torch.int8 and qkv.weight_scale.shape == (qkv.out_features,)
    assert not (folders["root"] / f"ran-int{bits}").exists(), "the folder's quantization.py must never run"
    in_memory16 = auto_model(folders["fp16"], torch.float16).quantize(bits)
    with torch.no_grad():
        assert torch.equal(loaded16(IDS).logits, in_memory16(IDS).logits)
        # fp32 compute: the folder loaded in fp32 equals the fp16 model quantized, then cast to fp32
        loaded32 = auto_model(folders[bits], torch.float32)
        in_memory32 = in_memory16.float()
        assert loaded32.transformer.layers[0].attention.dense.weight_scale.dtype == torch.float32
        assert torch.equal(loaded32(IDS).logits, in_memory32(IDS).logits)
        # and it is a working model: close to the float one (int4 is coarser)
        ref = auto_model(folders["fp16"], torch.float32)(IDS).logits
        agree = (loaded32(IDS).logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree >= (0.9 if bits == 8 else 0.6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits", [4, 8])
def test_loaded_folder_on_cuda(folders, bits):
    loaded = auto_model(folders[bits], torch.float16).cuda()
    in_memory = auto_model(folders["fp16"], torch.float16).cuda().quantize(bits)
    with torch.no_grad():
        a, b = loaded(IDS.cuda()).logits, in_memory(IDS.cuda()).logits
    assert loaded.transformer.layers[0].mlp.dense_h_to_4h.weight.device.type == "cuda"
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- refusals
def test_quantize_again_is_refused_with_the_way_that_works(folders):
    model = auto_model(folders[4], torch.float32)
    with pytest.raises(quant.QuantizedCheckpointError, match=r"quantization_bit=4.*load the fp16 folder and call quantize\(8\)"):
        model.quantize(8)
    with pytest.raises(ValueError, match=r"already quantized.*Load the fp16 folder"):
        quant.thudm_quantized_state_dict(model, 4)


def test_saving_a_loaded_quantized_model_as_float_is_refused(folders, tmp_path):
    model = auto_model(folders[4], torch.float32)
    with pytest.raises(ValueError, match=r"loaded pre-quantized \(quantization_bit=4.*save_quantized\(float_model, DIR, 4\).*--quantization_bit 4"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_save_quantized_never_replaces_a_model_folder(folders):
    fp16 = auto_model(folders["fp16"], torch.float16)
    before = (folders[4] / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        quant.save_quantized(fp16, folders[4], 4)
    assert (folders[4] / "model.safetensors").stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------------------- LoRA (peft)
def _lora_step(model, steps=2):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0,
                                                  target_modules=["query_key_value"]))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(steps):
        loss = peft_model(input_ids=IDS, labels=IDS).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return peft_model.eval(), losses


def test_lora_trains_on_an_int4_folder_and_reloads_with_peft(folders, tmp_path):
    from peft import PeftModel

    from glmcourse import adapters, lora

    base = auto_model(folders[4], torch.float32)
    codes = base.transformer.layers[0].attention.query_key_value.weight.clone()
    peft_model, losses = _lora_step(base)
    assert all(math.isfinite(x) for x in losses) and losses[1] < losses[0]
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.equal(base.transformer.layers[0].attention.query_key_value.base_layer.weight, codes)
    peft_model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        trained = peft_model(input_ids=IDS).logits
    reloaded = PeftModel.from_pretrained(auto_model(folders[4], torch.float32), str(tmp_path / "adapter"))
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=IDS).logits, trained)
    # merging into the int4 base is refused, naming the fp16 folder; with it, the merge is done in fp32
    with pytest.raises(lora.LoraError, match=r"pre-quantized .*int4.*fp16 folder"):
        adapters.merge_lora(reloaded, verbose=False)
    merged = adapters.merge_lora(reloaded, base_path=folders["fp16"], verbose=False)
    assert not adapters.is_quantized(merged)
    with torch.no_grad():
        rel = (merged(input_ids=IDS).logits - trained).norm() / trained.norm()
    assert rel < 0.1  # the merged fp32 model differs from the int4 one only by the int4 rounding


# ---------------------------------------------------------------------------------------------- P-Tuning v2
def test_ptuning_command_trains_on_an_int4_folder_and_the_prefix_loads(folders, tmp_path, capsys):
    from glmcourse import ptuning, ptuning_train

    records = json.loads((glmcourse.DATA_DIR / "lora_train.json").read_text(encoding="utf-8"))[:8]
    (tmp_path / "train_alpaca.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    ptuning_train.convert(tmp_path / "train_alpaca.json", tmp_path / "train.json")
    out = tmp_path / "pt"
    code = ptuning_train.main(["--do_train", "--train_file", str(tmp_path / "train.json"), "--model_name_or_path",
                               str(folders[4]), "--output_dir", str(out), "--per_device_train_batch_size", "4",
                               "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--pre_seq_len", "4",
                               "--quantization_bit", "4"])  # train.sh's flag on an INT4 folder: nothing to redo
    captured = capsys.readouterr()
    assert code == 0, captured.err
    prefix = load_file(out / ptuning.PREFIX_WEIGHTS)["transformer.prefix_encoder.embedding.weight"]
    assert prefix.dtype == torch.float32 and prefix.shape[0] == 4
    model = ptuning.load_ptuned_model(out, base_path=folders[4], quantization_bit=4, verbose=False)
    assert model.quantized_bits == 4
    assert isinstance(model.transformer.layers[0].attention.query_key_value, quant.QuantizedLinear)
    assert torch.equal(model.transformer.prefix_encoder.embedding.weight, prefix)
    with torch.no_grad():
        assert torch.isfinite(model(IDS).logits).all()


def test_other_bits_on_a_quantized_folder_are_refused_with_the_fix(folders):
    from glmcourse import ptuning

    model = auto_model(folders[4], torch.float32)
    ptuning.quantize_once(model, folders[4], 4)  # already int4: nothing to do
    assert model.quantized_bits == 4
    with pytest.raises(ptuning.PTuningError, match=r"already quantized to int4.*leave the flag out.*fp16 folder"):
        ptuning.quantize_once(model, folders[4], 8)


def test_a_pytorch_model_bin_folder_loads_too(folders, tmp_path):
    """THUDM publishes pytorch_model.bin: the same state dict saved with torch.save loads the same way."""
    import shutil

    folder = tmp_path / "int4-bin"
    folder.mkdir()
    shutil.copy(folders[4] / "config.json", folder / "config.json")
    torch.save(load_file(folders[4] / "model.safetensors"), folder / "pytorch_model.bin")
    with torch.no_grad():
        assert torch.equal(auto_model(folder, torch.float32)(IDS).logits, auto_model(folders[4], torch.float32)(IDS).logits)


def test_a_folder_missing_codes_is_a_clear_error(folders, tmp_path):
    import shutil

    from safetensors.torch import save_file

    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(folders[4] / "config.json", folder / "config.json")
    state = load_file(folders[4] / "model.safetensors")
    del state["transformer.layers.1.mlp.dense_4h_to_h.weight_scale"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(quant.QuantizedCheckpointError, match=r"lacks the int4 codes or scales .*1024 -> 256.*save_quantized"):
        auto_model(folder, torch.float32)
