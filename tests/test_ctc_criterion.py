"""w2v2_ctc criterion: parity with fairseq's ``ctc`` criterion, skipping of non-finite
losses, and summable logging."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from fairseq.criterions.ctc import CtcCriterion, CtcCriterionConfig
from fairseq.data import Dictionary
from fairseq.logging import metrics

from w2v2_plugin.criterions.ctc import NonFiniteLossError, W2v2CtcCriterion, W2v2CtcCriterionConfig

LETTERS = list("|ABCDE")


def letter_dict() -> Dictionary:
    d = Dictionary()
    for c in LETTERS:
        d.add_symbol(c)
    return d


class FrameModel(torch.nn.Module):
    """Per-frame logits from a learnable table: enough to drive the criterion."""

    def __init__(self, frames: int, batch: int, vocab: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(frames, batch, vocab, generator=g) * 3)
        self.poison = False

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor) -> dict:
        logits = self.table * 1.0  # (T, B, V)
        if self.poison:
            logits = logits * float("nan")
        return {"encoder_out": logits, "padding_mask": padding_mask}

    def get_normalized_probs(self, net_output: dict, log_probs: bool) -> torch.Tensor:
        return torch.log_softmax(net_output["encoder_out"].float(), dim=-1)


def make_sample(d: Dictionary, texts: list[str], frames: int) -> dict:
    targets = [d.encode_line(" ".join(t.replace(" ", "|")), append_eos=False,
                             add_if_not_exist=False) for t in texts]
    lengths = torch.tensor([len(t) for t in targets])
    target = torch.full((len(texts), int(lengths.max())), d.pad(), dtype=torch.long)
    for i, t in enumerate(targets):
        target[i, : len(t)] = t
    padding_mask = torch.zeros(len(texts), frames, dtype=torch.bool)
    padding_mask[1, frames - 3:] = True  # second utterance is shorter
    return {"id": torch.arange(len(texts)), "net_input": {"source": torch.zeros(len(texts), 10),
                                                          "padding_mask": padding_mask},
            "target": target, "target_lengths": lengths, "ntokens": int(lengths.sum())}


@pytest.fixture()
def setup():
    d = letter_dict()
    task = SimpleNamespace(target_dictionary=d, blank_symbol="<s>", cfg=SimpleNamespace())
    sample = make_sample(d, ["AB CA", "EDD B"], frames=20)
    model = FrameModel(20, 2, len(d))
    return d, task, sample, model


def ours(task, **kw) -> W2v2CtcCriterion:
    cfg = W2v2CtcCriterionConfig(zero_infinity=True, sentence_avg=kw.pop("sentence_avg", True), **kw)
    return W2v2CtcCriterion(cfg, task)


@pytest.mark.parametrize("sentence_avg", [True, False])
def test_matches_fairseq_ctc_criterion(setup, sentence_avg):
    d, task, sample, model = setup
    theirs = CtcCriterion(CtcCriterionConfig(zero_infinity=True, sentence_avg=sentence_avg), task)
    mine = ours(task, sentence_avg=sentence_avg)
    for training in (True, False):
        model.train(training)
        l1, s1, log1 = theirs(model, sample)
        l2, s2, log2 = mine(model, sample)
        assert torch.allclose(l1, l2, atol=1e-5, rtol=0)
        assert s1 == s2
        for key in ("ntokens", "nsentences", "sample_size", "c_errors", "c_total", "w_errors",
                    "wv_errors", "w_total"):
            assert log1.get(key) == log2.get(key), key
        assert log2["nonfinite"] == 0
    assert log2["w_total"] == 4 and log2["c_total"] == 10


def test_perfect_prediction_gives_zero_wer(setup):
    d, task, sample, _ = setup
    frames = 20
    model = FrameModel(frames, 2, len(d))
    with torch.no_grad():  # spell each target with blanks in between
        model.table.fill_(-10.0)
        for b in range(2):
            units = sample["target"][b, : sample["target_lengths"][b]].tolist()
            path = []
            for u in units:
                path += [u, 0]
            path += [0] * (frames - len(path))
            for t, u in enumerate(path):
                model.table[t, b, u] = 10.0
    model.eval()
    _, _, log = ours(task)(model, sample)
    assert log["w_errors"] == 0 and log["c_errors"] == 0 and log["w_total"] == 4


def test_nonfinite_loss_is_skipped_with_zero_gradient(setup):
    d, task, sample, model = setup
    crit = ours(task, max_consecutive_nonfinite=3)
    model.train()
    model.poison = True
    loss, sample_size, log = crit(model, sample)
    assert loss.item() == 0.0 and sample_size == 0 and log["nonfinite"] == 1
    loss.backward()
    assert model.table.grad is not None and torch.count_nonzero(model.table.grad) == 0
    crit(model, sample)
    model.poison = False  # a finite batch resets the run of bad ones
    loss, _, log = crit(model, sample)
    assert torch.isfinite(loss) and loss.item() > 0 and log["nonfinite"] == 0
    model.poison = True
    crit(model, sample)
    crit(model, sample)
    with pytest.raises(NonFiniteLossError, match="3 training batches in a row.*learning rate.*fp16"):
        crit(model, sample)


def test_validation_nonfinite_does_not_count_towards_stop(setup):
    d, task, sample, model = setup
    crit = ours(task, max_consecutive_nonfinite=2)
    model.eval()
    model.poison = True
    for _ in range(3):
        _, _, log = crit(model, sample)
        assert log["nonfinite"] == 1


def test_logging_outputs_sum_to_the_same_metrics(setup):
    d, task, sample, model = setup
    crit = ours(task)
    model.eval()
    _, _, log = crit(model, sample)
    assert W2v2CtcCriterion.logging_outputs_can_be_summed()
    summed = {k: log[k] * 2 for k in log}
    with metrics.aggregate() as separate:
        W2v2CtcCriterion.reduce_metrics([log, log])
    with metrics.aggregate() as together:
        W2v2CtcCriterion.reduce_metrics([summed])
    a, b = separate.get_smoothed_values(), together.get_smoothed_values()
    for key in ("loss", "uer", "wer", "nonfinite"):
        assert a[key] == pytest.approx(b[key]), key
    assert a["wer"] == pytest.approx(100.0 * log["w_errors"] / log["w_total"], abs=1e-3)


def test_lm_decoding_options_are_refused(setup):
    _, task, _, _ = setup
    with pytest.raises(ValueError, match="w2v2-infer"):
        ours(task, wer_kenlm_model="lm.bin")


def test_sentencepiece_needs_matching_post_process(setup):
    d, _, _, _ = setup
    task = SimpleNamespace(target_dictionary=d, blank_symbol="<s>",
                           cfg=SimpleNamespace(sentencepiece_model="spm.model"))
    with pytest.raises(ValueError, match="post_process=sentencepiece"):
        ours(task)
    ours(task, post_process="sentencepiece")
