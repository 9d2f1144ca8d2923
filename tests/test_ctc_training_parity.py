"""CTC fine-tuning learns as fairseq's ``wav2vec_ctc`` does: same weights in, same updates out.

The log-prob parity of tests/test_conversion_ctc.py holds for one forward pass in eval mode;
this checks the training dynamics: fairseq's ``Wav2VecCtc`` + ``ctc`` criterion and the
plugin's ``W2v2Ctc`` + ``w2v2_ctc`` criterion, built on one fairseq pretraining checkpoint,
the plugin's output layer set to fairseq's (its random init is the only thing the two
constructors draw differently), then several Adam updates on the same padded batches with
the randomness of training switched off (no masking, no dropout): the losses of every update
agree to 1e-4 relative, the frozen phase (``freeze_finetune_updates``) included.

(A real ``fairseq-hydra-train`` comparison of the two from one seed differs because the
output layer's init is drawn from different points of the RNG stream: over 60 updates with
only that layer training, the gap between the arms changes sign with the seed; see
BENCHMARKS.md.)
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from fairseq.criterions.ctc import CtcCriterion, CtcCriterionConfig
from fairseq.data import Dictionary
from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
from test_conversion_ctc import letter_dictionary, save_fairseq_wav2vec2

import w2v2_plugin  # noqa: F401  (registers the plugin's components)
from w2v2_plugin.criterions.ctc import W2v2CtcCriterion, W2v2CtcCriterionConfig
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig

REL_TOL = 1e-4
# no randomness in training: no time or channel masks, no dropout
FINETUNE = dict(apply_mask=False, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                final_dropout=0.0, layerdrop=0.0, feature_grad_mult=0.0)


def batches(d: Dictionary, count: int) -> list[dict]:
    """Padded batches of random audio with random letter transcripts."""
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(count):
        lengths = [8000, 6400, 4000]
        x = torch.randn(len(lengths), max(lengths), generator=g)
        pad = torch.zeros_like(x, dtype=torch.bool)
        for row, n in enumerate(lengths):
            pad[row, n:] = True
            x[row, n:] = 0
        targets = [torch.randint(4, len(d), (int(n) // 800,), generator=g) for n in lengths]
        target = torch.full((len(targets), max(len(t) for t in targets)), d.pad())
        for row, t in enumerate(targets):
            target[row, : len(t)] = t
        out.append({"id": torch.arange(len(lengths)) + 3 * i,
                    "net_input": {"source": x, "padding_mask": pad}, "target": target,
                    "target_lengths": torch.tensor([len(t) for t in targets]),
                    "ntokens": sum(len(t) for t in targets)})
    return out


def train(model, criterion, data: list[dict]) -> list[float]:
    """fairseq's update: loss summed over the batch, gradient divided by sample size, Adam."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=2e-3, betas=(0.9, 0.98), eps=1e-8)
    losses = []
    for step, sample in enumerate(data):
        model.train()
        model.set_num_updates(step)
        opt.zero_grad()
        loss, sample_size, _ = criterion(model, sample)
        (loss / sample_size).backward()
        opt.step()
        losses.append(loss.item() / sample_size)
    return losses


@pytest.mark.parametrize("freeze", [0, 3])
def test_same_updates_give_the_same_losses_as_fairseq(tmp_path, freeze):
    d = letter_dictionary()
    # pretraining dropouts on, so that the fine-tuning overrides must switch them off
    pre = save_fairseq_wav2vec2(tmp_path / "pretrained.pt", dropout_input=0.1, dropout_features=0.1)
    task = SimpleNamespace(target_dictionary=d, blank_symbol="<s>")
    common = dict(w2v_path=str(pre), normalize=False, data=str(tmp_path), ddp_backend="legacy_ddp",
                  freeze_finetune_updates=freeze, **FINETUNE)
    ref = Wav2VecCtc.build_model(Wav2Vec2CtcConfig(**common), task)
    ours = W2v2Ctc.build_model(W2v2CtcConfig(**common), task)
    ours.w2v_encoder.proj.load_state_dict(ref.w2v_encoder.proj.state_dict())
    data = batches(d, 6)

    ref_losses = train(ref, CtcCriterion(CtcCriterionConfig(zero_infinity=True, sentence_avg=True), task), data)
    our_losses = train(ours, W2v2CtcCriterion(W2v2CtcCriterionConfig(zero_infinity=True, sentence_avg=True), task),
                       data)

    assert all(math.isfinite(v) for v in ref_losses)
    assert ref_losses[-1] < ref_losses[0]  # the comparison is of a run that learns
    for step, (a, b) in enumerate(zip(ref_losses, our_losses)):
        assert abs(a - b) <= REL_TOL * abs(a), f"update {step}: fairseq {a} vs plugin {b}"
