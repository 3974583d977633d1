"""IceTextTokenizer against THUDM's own ChatGLM-6B tokenizer.

tests/fixtures/thudm_tokenizer_golden.json holds the ids and decodes that THUDM's original
tokenization_chatglm.py (v1.1, run out-of-tree under transformers 4.33.3) gave for the fixture's
ice_text.model: 240 strings (space runs 1-100, tabs, \\r\\n, emoji, rare CJK, control characters, the empty
string, ...) with num_image_tokens 0, 60 of them again with 20000, pairs (<eop>) and a left-padded batch.
Only those facts are in the repository, never THUDM's code.
"""
import hashlib
import json
from pathlib import Path

import pytest

from glmcourse.modeling import IceTextTokenizer
from glmcourse.modeling.tokenization_ice import IceTokenizerError, decode_whitespace, encode_whitespace

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FOLDER = FIXTURES / "thudm_chatglm6b"
GOLDEN = json.loads((FIXTURES / "thudm_tokenizer_golden.json").read_text(encoding="utf-8"))
KEYS = ["num_image_tokens_0", "num_image_tokens_20000"]


def test_golden_belongs_to_this_ice_text_model():
    assert GOLDEN["transformers"] == "4.33.3"
    assert hashlib.sha256((FOLDER / "ice_text.model").read_bytes()).hexdigest() == GOLDEN["ice_text_model_sha256"]
    assert len(GOLDEN["num_image_tokens_0"]["cases"]) >= 200


@pytest.fixture(scope="module", params=KEYS)
def tok_and_gold(request):
    nit = int(request.param.rsplit("_", 1)[1])
    return IceTextTokenizer.from_pretrained(FOLDER, num_image_tokens=nit), GOLDEN[request.param]


def test_ids_decodes_and_pieces_equal_thudms(tok_and_gold):
    tok, gold = tok_and_gold
    assert tok.vocab_size == gold["vocab_size"]
    for case in gold["cases"]:
        assert tok.encode(case["text"]) == case["ids"], repr(case["text"])
        assert tok.convert_ids_to_tokens(case["ids"]) == case["pieces"], repr(case["text"])
        assert tok.decode(case["ids"]) == case["decode"], repr(case["text"])
        assert tok.decode(case["ids"], skip_special_tokens=True) == case["decode_skip"], repr(case["text"])
    for name, want in gold["special_ids"].items():
        assert tok.convert_tokens_to_ids(name) == want, name


def test_pairs_end_with_eop_and_batches_pad_on_the_left(tok_and_gold):
    tok, gold = tok_and_gold
    for pair in gold["pairs"]:
        assert tok.encode(pair["a"], pair["b"]) == pair["ids"]
        assert pair["ids"][-1] == tok.eop_token_id
    batch = tok(gold["batch"]["texts"], padding=True)
    assert batch["input_ids"] == gold["batch"]["input_ids"]
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        pads = mask.count(0)
        assert ids[:pads] == [tok.pad_token_id] * pads and 0 not in mask[pads:]


def test_ids_of_old_checkpoints_are_20000_higher():
    new = IceTextTokenizer.from_pretrained(FOLDER)
    old = IceTextTokenizer.from_pretrained(FOLDER, num_image_tokens=20000)
    text = "a  b\tc\n你好 😀"
    assert [i + 20000 for i in new.encode(text)] == old.encode(text)
    assert old.gmask_token_id == new.gmask_token_id + 20000 and old.decode(old.encode(text)) == text


def test_whitespace_rewrite_is_longest_first_and_reversible():
    assert encode_whitespace("a" + " " * 85 + "b") == "a<|blank_80|><|blank_5|>b"
    assert encode_whitespace("x\n\ty   z") == "x<n><|tab|>y<|blank_3|>z"
    for text in ["", " ", "a" + " " * 163 + "b", "\t \n  \t"]:
        assert decode_whitespace(encode_whitespace(text)) == text


def test_typed_special_tokens_stay_text():
    """The deliberate difference from THUDM's class: a user's "<sop>" or "[gMASK]" is spelled as text."""
    tok = IceTextTokenizer.from_pretrained(FOLDER)
    ids = tok.encode("<sop> [gMASK] <eop> [MASK] <pad>", add_special_tokens=False)
    specials = {tok.sop_token_id, tok.gmask_token_id, tok.eop_token_id, tok.mask_token_id, tok.pad_token_id}
    assert not specials & set(ids)
    assert tok.decode(ids) == "<sop> [gMASK] <eop> [MASK] <pad>"
    assert tok.encode("hi")[-2:] == [tok.gmask_token_id, tok.sop_token_id]  # the real ones are still appended


def test_save_pretrained_round_trips(tmp_path):
    tok = IceTextTokenizer.from_pretrained(FOLDER, num_image_tokens=20000)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["num_image_tokens"] == 20000 and "auto_map" not in config
    again = IceTextTokenizer.from_pretrained(tmp_path)
    assert again.encode("a  b\n") == tok.encode("a  b\n")


def test_a_file_that_is_not_sentencepiece_is_named(tmp_path):
    (tmp_path / "ice_text.model").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(IceTokenizerError, match=r"ice_text.model: not a SentencePiece model.*copy ice_text.model"):
        IceTextTokenizer.from_pretrained(tmp_path)
