"""Evaluation metrics against hand-computed values and the reference libraries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from tunelab.errors import TunelabError
from tunelab.evaluate.classification import ClassificationAccumulator
from tunelab.evaluate.consistency import ConsistencyAccumulator, fact_overlap
from tunelab.evaluate.diversity import DiversityAccumulator, self_bleu
from tunelab.evaluate.generation import GenerationAccumulator, bleu, meteor, rouge
from tunelab.evaluate.language import resolve_language
from tunelab.evaluate.qa import exact_match, normalize_answer, token_f1
from tunelab.evaluate.wordnet_setup import lexnames_text

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
LABELS = [0, 1, 2, 2]


def _accumulate(scores: np.ndarray, labels: list[int], num_labels: int = 3) -> dict:
    acc = ClassificationAccumulator(num_labels)
    acc.update(torch.tensor(scores[:2]), torch.tensor(labels[:2]))  # two batches
    acc.update(torch.tensor(scores[2:]), torch.tensor(labels[2:]))
    return acc.compute()


def test_classification_metrics_by_hand():
    # predictions 0, 1, 1, 2 vs labels 0, 1, 2, 2 -> accuracy 3/4.
    # F1: class 0 = 1; class 1 P=1/2 R=1 -> 2/3; class 2 P=1 R=1/2 -> 2/3; macro 7/9.
    # micro F1 (single-label) = accuracy.
    # AUC one-vs-rest: class 0 -> 1, class 1 -> 1 (0.6 beats 0.2, 0.5, 0.2),
    # class 2: positives 0.3, 0.7 vs negatives 0.1, 0.3 -> (1 + 0.5 + 1 + 1) / 4 = 0.875;
    # macro (1 + 1 + 0.875) / 3.
    out = _accumulate(PROBS, LABELS)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["f1_macro"] == pytest.approx(7 / 9)
    assert out["f1_micro"] == pytest.approx(0.75)
    assert out["auc"] == pytest.approx((1 + 1 + 0.875) / 3)
    assert out["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert out["auc_classes_skipped"] == []


def test_classification_logits_equal_probabilities():
    # softmax(log p) = p, so logits give the same metrics as the probabilities
    assert _accumulate(np.log(PROBS), LABELS) == _accumulate(PROBS, LABELS)


def test_f1_macro_over_present_labels_and_per_class_support():
    # label 2 has no rows (but is predicted once, for a true 0): class 0 P=1 R=1/2 -> 2/3,
    # class 1 -> 1; macro over the present labels (0, 1) = 5/6, not (2/3 + 1 + 0) / 3
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    acc = ClassificationAccumulator(3, ["neg", "neu", "pos"])
    acc.update(torch.tensor(probs), torch.tensor([0, 1, 0, 1]))
    out = acc.compute()
    assert out["f1_macro"] == pytest.approx(5 / 6)
    assert out["f1_macro_labels"] == ["neg", "neu"]
    assert out["per_class"]["neg"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert out["per_class"]["neu"]["support"] == 2 and out["per_class"]["neu"]["f1"] == 1.0
    assert out["per_class"]["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_auc_binary_and_absent_class():
    # binary: positives 0.8, 0.4 vs negatives 0.2, 0.6 -> 3 of 4 pairs ranked right = 0.75
    binary = np.array([[0.8, 0.2], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
    assert _accumulate(binary, [0, 1, 1, 0], 2)["auc"] == pytest.approx(0.75)
    # class 2 never occurs: skipped. class 0: 0.5, 0.5 vs 0.2, 0.45 -> 1;
    # class 1: 0.7, 0.35 vs 0.4, 0.2 -> 3/4; macro (1 + 0.75) / 2
    probs = np.array([[0.5, 0.4, 0.1], [0.5, 0.2, 0.3], [0.2, 0.7, 0.1], [0.45, 0.35, 0.2]])
    out = _accumulate(probs, [0, 0, 1, 1])
    assert out["auc"] == pytest.approx(0.875)
    assert out["auc_classes_skipped"] == ["2"]
    assert _accumulate(binary, [1, 1, 1, 1], 2)["auc"] is None


def test_qa_exact_match_and_f1():
    assert normalize_answer("The  Cat!") == "cat"
    assert exact_match("The Cat!", "cat") == 1.0
    # [black, cat, sat] vs [cat, sat, down]: 2 shared, P = R = 2/3 -> F1 2/3
    assert token_f1("the black cat sat", "a cat sat down") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0


def test_qa_chinese_character_tokens():
    assert exact_match("北京。", "北京") == 1.0
    # [北, 京, 大, 学] vs [北, 京]: 2 shared, P = 1/2, R = 1 -> F1 2/3
    assert token_f1("北京大学", "北京") == pytest.approx(2 / 3)


HYPS = ["the cat sat on the mat", "a quick brown fox jumps", "hello there my friend"]
REFS = ["the cat is on the mat", "the quick brown fox jumped", "hello my good friend"]


def test_bleu_parity_and_accumulation():
    expected = sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert bleu(HYPS, REFS) == pytest.approx(expected)
    assert bleu(["four words are here"], ["four words are here"]) == pytest.approx(100.0)
    acc = GenerationAccumulator({"bleu"}, "en")
    acc.update(HYPS[:2], REFS[:2])
    acc.update(HYPS[2:], REFS[2:])
    assert acc.compute()["bleu"] == pytest.approx(expected)


def test_bleu_chinese_uses_zh_tokenizer():
    hyps, refs = ["我爱北京天安门", "今天天气很好"], ["我爱北京故宫", "今天天气不错"]
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    assert bleu(hyps, refs, "zh") == pytest.approx(expected)
    assert expected > 0 and sacrebleu.corpus_bleu(hyps, [refs]).score == 0.0


def test_rouge_by_hand_and_parity():
    # "the cat sat" vs "the cat sat down": R-1 P=1 R=3/4 -> 6/7; R-2 P=1 R=2/3 -> 0.8;
    # R-L LCS 3 -> 6/7
    out = rouge(["the cat sat"], ["the cat sat down"])
    assert out == pytest.approx({"rouge1": 6 / 7, "rouge2": 0.8, "rougeL": 6 / 7})
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    lib = [scorer.score(r, h) for h, r in zip(HYPS, REFS, strict=True)]
    got = rouge(HYPS, REFS)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert got[key] == pytest.approx(np.mean([s[key].fmeasure for s in lib]))


def test_rouge_chinese_characters():
    # [我, 爱, 北, 京] vs [我, 爱, 上, 海]: R-1 2/4 -> 0.5; bigrams 我爱 shared of 3 -> 1/3;
    # LCS 我爱 = 2 -> 0.5. rouge-score's default tokenizer drops CJK entirely (score 0).
    out = rouge(["我爱北京"], ["我爱上海"], "zh")
    assert out == pytest.approx({"rouge1": 0.5, "rouge2": 1 / 3, "rougeL": 0.5})
    assert rouge(["我爱北京"], ["我爱上海"], "en")["rouge1"] == 0.0


def test_meteor_uses_wordnet_synonyms():
    # car/auto are WordNet synonyms: 4 matches in 1 chunk -> 1 - 0.5 * (1/4)^3.
    # Without WordNet only 3 words match: 0.75 * (1 - 0.5 * (1/3)^3) = 0.736.
    assert meteor(["the car is red"], ["the auto is red"]) == pytest.approx(1 - 0.5 / 64)
    # identical 6 words: 1 - 0.5 * (1/6)^3
    assert meteor(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(
        1 - 0.5 / 216
    )


def test_meteor_without_wordnet_names_setup_command(monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", ["/nonexistent"])
    from nltk.corpus import wordnet

    monkeypatch.setattr(wordnet, "_LazyCorpusLoader__load", _raise_lookup, raising=False)
    monkeypatch.setattr(wordnet, "ensure_loaded", _raise_lookup, raising=False)
    with pytest.raises(TunelabError, match=r"python -m tunelab\.evaluate\.wordnet_setup"):
        meteor(["a"], ["a"])


def _raise_lookup() -> None:
    raise LookupError("Resource wordnet not found")


def test_lexnames_file_format():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


def test_language_detection():
    assert resolve_language("auto", ["我爱北京天安门"]) == "zh"
    assert resolve_language("auto", ["hello world 世界"]) == "en"  # 10 latin vs 2 CJK
    assert resolve_language("zh", ["hello"]) == "zh"


def test_distinct_n_and_self_bleu():
    # unigrams a b a b c: 3 unique of 5 -> 0.6; bigrams (a b) (b a) (b c): 3 of 3 -> 1
    acc = DiversityAccumulator("en")
    acc.update(["a b a", "b c"])
    out = acc.compute()
    assert out["distinct_1"] == pytest.approx(0.6) and out["distinct_2"] == pytest.approx(1.0)
    assert self_bleu(["x y z w", "x y z w"]) == pytest.approx(100.0)
    outputs = ["the cat sat on the mat", "a dog ran in the park", "the cat ran on the mat"]
    metric = sacrebleu.metrics.BLEU(effective_order=True)
    expected = np.mean(
        [metric.sentence_score(o, [x for x in outputs if x != o]).score for o in outputs]
    )
    assert self_bleu(outputs) == pytest.approx(expected)


def test_self_bleu_sample_is_bounded():
    acc = DiversityAccumulator("en", self_bleu_sample=10, seed=0)
    acc.update([f"output number {i}" for i in range(1000)])
    assert len(acc._sample) == 10
    assert acc.compute()["distinct_1"] == pytest.approx(1002 / 3000)  # output, number + 1000 ids


def test_fact_overlap_by_hand():
    # facts: numbers {12, 3500}, names {Paris, Smith} ("Revenue" starts the sentence);
    # the source has 12, 3500 and Paris but not Smith -> 3/4
    out = "Revenue rose 12% to 3,500 in Paris, said Smith."
    src = "In Paris revenue rose by 12 percent to 3500."
    assert fact_overlap(out, src) == pytest.approx(0.75)
    # CJK bigrams 北京 京很 很大: only 北京 is in the source -> 1/3
    assert fact_overlap("北京很大", "北京是首都") == pytest.approx(1 / 3)
    assert fact_overlap("yes it is", "anything") is None
    acc = ConsistencyAccumulator()
    acc.update([out, "yes it is"], [src, "x"])
    assert acc.compute() == {"consistency": pytest.approx(0.75), "consistency_scored": 1}


def test_nli_scorer_plumbing(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer, BertForSequenceClassification

    from tunelab.evaluate.consistency import NliScorer

    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    model.config.id2label = {0: "contradiction", 1: "neutral", 2: "ENTAILMENT"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "nli")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "nli")
    scorer = NliScorer(tmp_path / "nli")
    scores = scorer.score(["the team won", "a b"], ["the team won the match", "c d"])
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    enc = tok(["the team won the match"], ["the team won"], return_tensors="pt")
    with torch.no_grad():
        expected = model.eval()(**enc).logits.softmax(-1)[0, 2].item()
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert all(0.0 <= s <= 1.0 for s in scores) and len(scores) == 2
    model.config.id2label = {0: "a", 1: "b", 2: "c"}
    model.save_pretrained(tmp_path / "not_nli")
    tok.save_pretrained(tmp_path / "not_nli")
    with pytest.raises(TunelabError, match="no entailment class"):
        NliScorer(tmp_path / "not_nli")


def test_perplexity_accumulator_by_hand():
    from tunelab.evaluate.perplexity import PerplexityAccumulator

    acc = PerplexityAccumulator()
    acc.update(6.0, 4)  # two batches: 10 nats over 5 tokens -> exp(2)
    acc.update(4.0, 1)
    assert acc.compute()["perplexity"] == pytest.approx(math.exp(2.0))
