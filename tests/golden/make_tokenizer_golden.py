#!/usr/bin/env python3
"""Writes the tokenizer fixtures in tests/golden/tokenizer/ from Hugging Face's slow GPT2Tokenizer.

The reference is transformers' pure-Python GPT2Tokenizer (transformers < 5; version 5 replaced it by the
Rust `tokenizers` backend), built directly from data/opt-tokenizer/{vocab.json,merges.txt} with OPT's
settings (facebook/opt-* tokenizer_config.json): add_bos_token=True, add_prefix_space=False,
bos/eos/unk "</s>", pad "<pad>". Every encoding therefore starts with id 2.

Outputs:
  tokenizer/wikitext2_test.json  count, sha256 of the ids (little-endian int32), first/last 2000 ids of the
                                 SparseGPT test evaluation string "\\n\\n".join(rows of wiki.test.raw)
  tokenizer/cases.json           targeted strings with their ids and HF's decode of those ids, plus
                                 id lists that cut multi-byte characters, with HF's errors="replace" decode

Usage (see tests/golden/README.md):  HF_HUB_OFFLINE=1 python3 tests/golden/make_tokenizer_golden.py
"""
import hashlib
import json
import os
import struct
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import transformers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data")
OUT = os.path.join(ROOT, "tests", "golden", "tokenizer")
EVAL_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"

CASES = [
    ("contractions", "I'll don't we've they're it's HE'S"),
    ("spaces_newlines", "a  b   c\n\n\nd \n e"),
    ("digits", "In 1984, 3.14159 and 1,000,000"),
    ("greek", "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο"),
    ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю"),
    ("chinese", "我能吞下玻璃而不伤身体。"),
    ("arabic", "أنا قادر على أكل الزجاج و هذا لا يؤلمني"),
    ("hindi", "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती"),
    ("emoji", "I \u2764\ufe0f \U0001F355! \U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"
              " \U0001F3F3\ufe0f\u200d\U0001F308 \U0001F1EB\U0001F1F7"),
    ("accented", "Café naïve façade Ångström résumé Zürich Œuvre ŁÓDŹ"),
    ("combining", "e\u0301 a\u0308 n\u0303"),
    ("leading_trailing_spaces", "   leading and trailing   "),
    ("empty", ""),
    ("only_spaces", "    "),
    ("only_newlines", "\n\n"),
    ("wikitext_markup", " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor . "
                        "He had a guest @-@ starring role on the television series The Bill in 2000 . \n"),
    ("wikitext_numbers", " 2 @,@ 000 @.@ 5 km and 1 @.@ 3 @-@ metre"),
    ("tabs", "col1\tcol2\t\tcol3\n\tindented\t"),
    ("special_tokens_in_text", "a</s>b<pad>c<s>d<unk>e</s>"),
    ("unicode_spaces", "x\u00a0y\u3000z\u2028w\u0085v\u2009u"),
    ("apostrophes", "'s 's's ''' don\u2019t rock'n'roll 'tis"),
    ("long_words", "Supercalifragilisticexpialidocious antidisestablishmentarianism"),
    ("crlf", "line1\r\nline2\r\n"),
    ("control_chars", "a\x00b\x01c\x7fd\x1ce"),
    ("letters_digits", "abc123def 4th 1st 2nd COVID19 x86_64"),
    ("punctuation", "Hello!!! What?!... (yes) [no] {maybe} <tag> --- ***"),
    ("code_url", "https://example.com/a_b?c=d&e=f; x+=1; // comment"),
    ("japanese_korean", "日本語のテキスト 한국어 텍스트"),
    ("math_symbols", "∑ x² ≤ ∞ → ∀ε>0 ∃δ"),
]
# Id lists that cut characters apart: HF's decode(errors="replace") gives U+FFFD per maximal subpart.
DECODE_SOURCES = ["日本語", " \U0001F44D\U0001F3FD", "Zürich"]


def wikitext_eval_string():
    # HF rows of wikitext-2-raw-v1 (data/SOURCES.md note W1): Python text-mode line iteration.
    with open(os.path.join(DATA, "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8") as f:
        rows = [line if line.strip() else "" for line in f]
    text = "\n\n".join(rows)
    assert len(rows) == 4358, len(rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert digest == EVAL_SHA256, f"evaluation string sha256 {digest}, expected {EVAL_SHA256}"
    return text


def ids_sha256(ids):
    return hashlib.sha256(struct.pack(f"<{len(ids)}i", *ids)).hexdigest()


def main():
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        sys.exit(f"transformers {transformers.__version__} has no pure-Python GPT2Tokenizer; "
                 "install the reference with: pip install 'transformers>=4.40,<5'")
    from transformers import GPT2Tokenizer

    tok = GPT2Tokenizer(
        vocab_file=os.path.join(DATA, "opt-tokenizer", "vocab.json"),
        merges_file=os.path.join(DATA, "opt-tokenizer", "merges.txt"),
        errors="replace", unk_token="</s>", bos_token="</s>", eos_token="</s>", pad_token="<pad>",
        add_prefix_space=False, add_bos_token=True)
    tok.model_max_length = 1 << 30  # the whole split is encoded at once, as SparseGPT does
    # Sanity check against a published facebook/opt-125m encoding (data/SOURCES.md note T1).
    assert tok("Today is a beautiful day and I want")["input_ids"] == [2, 5625, 16, 10, 2721, 183, 8, 38, 236]

    os.makedirs(OUT, exist_ok=True)
    cases = []
    for name, text in CASES:
        ids = tok(text)["input_ids"]
        decoded = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cases.append({"name": name, "text": text, "ids": ids, "decoded": decoded})
    decode_cases = []
    for text in DECODE_SOURCES:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for cut in range(1, len(ids)):
            for part in (ids[:cut], ids[cut:]):
                decode_cases.append({"ids": part, "decoded": tok.decode(part, clean_up_tokenization_spaces=False)})
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": f"transformers {transformers.__version__} GPT2Tokenizer (slow)",
                   "cases": cases, "decode_cases": decode_cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")

    text = wikitext_eval_string()
    t0 = time.time()
    ids = tok(text)["input_ids"]
    print(f"wikitext-2 test: {len(ids)} ids in {time.time() - t0:.1f} s")
    with open(os.path.join(OUT, "wikitext2_test.json"), "w") as f:
        json.dump({"generator": f"transformers {transformers.__version__} GPT2Tokenizer (slow)",
                   "text_sha256": EVAL_SHA256, "count": len(ids), "sha256_ids": ids_sha256(ids),
                   "first_2000": ids[:2000], "last_2000": ids[-2000:]}, f)
        f.write("\n")

    # Cross-check with the Rust tokenizer (not the reference; differences are reported, not fatal).
    try:
        from transformers import GPT2TokenizerFast
        fast = GPT2TokenizerFast(vocab_file=os.path.join(DATA, "opt-tokenizer", "vocab.json"),
                                 merges_file=os.path.join(DATA, "opt-tokenizer", "merges.txt"),
                                 unk_token="</s>", bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                 add_prefix_space=False, add_bos_token=True)
        fast.model_max_length = 1 << 30
        diff = [c["name"] for c in cases if fast(c["text"])["input_ids"] != c["ids"]]
        same = fast(text)["input_ids"] == ids
        print(f"fast tokenizer cross-check: wikitext {'same' if same else 'DIFFERENT'}; cases differing: {diff}")
    except Exception as e:  # the cross-check is informational only
        print(f"fast tokenizer cross-check skipped: {e}")
    print(f"wrote {OUT}/cases.json and {OUT}/wikitext2_test.json")


if __name__ == "__main__":
    main()
