"""task.precision=bf16: the forward pass under bf16 autocast with fp32 weights, gradients and
optimizer state, and the model's sensitive parts kept fp32; fp32 stays fairseq's own step."""
from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from test_finetuning_task import write_corpus
from test_finetuning_train import REPO, hydra_train

from w2v2_plugin.models.config import W2v2Config
from w2v2_plugin.models.wav2vec2 import W2v2Model
from w2v2_plugin.precision import PrecisionError, check_precision, step_autocast
from w2v2_plugin.tasks.pretraining import W2v2PretrainingConfig, W2v2PretrainingTask

PRETRAIN_CONFIG = REPO / "examples" / "wav2vec2" / "config" / "pretraining"
BF16 = torch.bfloat16


def tiny_model(dropout: float = 0.0) -> W2v2Model:
    torch.manual_seed(0)
    cfg = W2v2Config(conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
                     encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                     encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, latent_vars=16,
                     latent_groups=2, final_dim=32, num_negatives=10, quantize_targets=True, dropout=dropout,
                     dropout_input=dropout, dropout_features=dropout, attention_dropout=dropout,
                     activation_dropout=dropout, encoder_layerdrop=0.0)
    return W2v2Model(cfg).train()


def audio(bsz: int = 3, n: int = 16000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(n) / 16000.0
    tones = torch.stack([torch.sin(2 * torch.pi * (200 + 150 * i) * t) for i in range(bsz)])
    return 0.3 * tones + 0.05 * torch.randn(bsz, n, generator=g)


def loss_and_grads(model: W2v2Model, source: torch.Tensor, precision: str):
    model.zero_grad()
    torch.manual_seed(5)  # the same masks, distractors and Gumbel noise in both precisions
    with step_autocast(precision, "cpu"):
        out = model(source)
        logits = model.get_logits(out)
        loss = torch.nn.functional.cross_entropy(logits, model.get_targets({}, out), reduction="sum")
        for coef, extra in zip((0.1, 10.0), model.get_extra_losses(out)):
            loss = loss + coef * extra * logits.size(0)
    loss.backward()
    return out, logits, loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_check_precision_names_the_choices() -> None:
    assert check_precision("fp32") == "fp32" and check_precision("bf16") == "bf16"
    with pytest.raises(PrecisionError, match=r"task.precision='fp16': choose one of fp32, bf16"):
        check_precision("fp16")
    assert not torch.is_autocast_enabled("cpu")
    with step_autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with step_autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == BF16


def test_bf16_keeps_the_sensitive_parts_fp32() -> None:
    model = tiny_model()
    seen: dict[str, torch.dtype] = {}
    encoder = model.feature_encoder
    # on CPU the conv blocks run through their channels-last methods, not Module.__call__
    def recording(name: str, run):
        def record(*args, **kwargs):
            y = run(*args, **kwargs)
            seen.setdefault(name, y.dtype)
            return y
        return record

    for name, owner, method in (("block0", encoder, "waveform_block"),
                                ("block1", encoder.conv_layers[1], "forward_channels_last")):
        setattr(owner, method, recording(name, getattr(owner, method)))
    hooks = [mod.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
             for name, mod in (("attention", model.encoder.layers[0].attention),
                               ("target_projection", model.target_projection),
                               ("context_projection", model.context_projection))]
    out, logits, _, grads = loss_and_grads(model, audio(), "bf16")
    for h in hooks:
        h.remove()
    assert seen["block0"] == torch.float32  # the waveform block
    assert seen["block1"] == BF16 and seen["attention"] == BF16  # the bulk of the work is bf16
    assert seen["target_projection"] == seen["context_projection"] == torch.float32
    assert logits.dtype == torch.float32 and out["features_pen"].dtype == torch.float32
    assert out["prob_perplexity"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(g.dtype == torch.float32 for g in grads.values())


def test_bf16_loss_and_gradients_follow_fp32() -> None:
    """Same weights, batch and random draws: the bf16 loss within 1 % of fp32's, and every
    parameter's gradient pointing the same way (cosine > 0.98; measured >= 0.99)."""
    model = tiny_model()
    source = audio()
    _, _, loss32, g32 = loss_and_grads(model, source, "fp32")
    _, _, loss_again, _ = loss_and_grads(model, source, "fp32")
    assert loss_again == loss32  # the comparison is deterministic
    _, _, loss16, g16 = loss_and_grads(model, source, "bf16")
    assert torch.isfinite(loss16) and abs(loss16 - loss32) / loss32 < 0.01, (loss16, loss32)
    assert g16.keys() == g32.keys()
    cos = {k: float(torch.nn.functional.cosine_similarity(g32[k].flatten(), g16[k].flatten(), dim=0))
           for k in g32 if g32[k].abs().sum() > 0}
    assert min(cos.values()) > 0.98, sorted(cos.items(), key=lambda kv: kv[1])[:3]


def test_fp32_task_step_is_fairseqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """precision=fp32 hands the step to fairseq's own FairseqTask.train_step / valid_step."""
    from fairseq.tasks import FairseqTask
    calls = []
    monkeypatch.setattr(FairseqTask, "train_step", lambda self, *a, **k: calls.append("train") or (0, 1, {}))
    monkeypatch.setattr(FairseqTask, "valid_step", lambda self, *a, **k: calls.append("valid") or (0, 1, {}))
    task = W2v2PretrainingTask(W2v2PretrainingConfig(data="/nowhere"))
    task.train_step({}, tiny_model(), None, None, 0)
    task.valid_step({}, tiny_model(), None)
    assert calls == ["train", "valid"]


def test_bf16_task_refuses_cast_weights() -> None:
    task = W2v2PretrainingTask(W2v2PretrainingConfig(data="/nowhere", precision="bf16"))
    model = tiny_model().to(BF16)
    with pytest.raises(PrecisionError, match="needs fp32 weights.*common.fp16 / common.bf16"):
        task.valid_step({}, model, None)
    with pytest.raises(PrecisionError, match="choose one of"):
        W2v2PretrainingTask.setup_task(W2v2PretrainingConfig(data="/nowhere", precision="half", tpu=False))


def test_bf16_pretraining_run(tmp_path: Path) -> None:
    """A real fairseq-hydra-train run with task.precision=bf16: it trains, logs finite losses,
    and its checkpoint holds fp32 weights."""
    data = tmp_path / "data"
    write_corpus(data, seconds=(1.2, 1.5, 1.3, 1.6))
    res = hydra_train("tiny_cpu", tmp_path / "ckpt", f"task.data={data}", "++task.precision=bf16",
                      "optimization.max_update=3", "common.log_interval=1", "dataset.disable_validation=true",
                      "task.max_sample_size=16000", "dataset.max_tokens=64000",
                      "checkpoint.save_interval_updates=3", config_dir=PRETRAIN_CONFIG, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line.split(" - ", 1)[1]) for line in (res.stdout + res.stderr).splitlines()
               if "][train_inner][" in line]
    assert [r["num_updates"] for r in records] == ["1", "2", "3"]
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in records)
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, caplog) -> None:
    """On an AVX2-only CPU torch's bf16 kernels are reference loops (80x slower matrix products
    measured): the run is told so, once, and pointed at fp32."""
    import w2v2_plugin.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bf16_kernels", lambda: False)
    precision.warn_slow_cpu_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.precision"):
        for _ in range(2):
            with step_autocast("bf16", "cpu"):
                assert torch.is_autocast_enabled("cpu")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "use task.precision=fp32" in warnings[0]
    precision.warn_slow_cpu_bf16.cache_clear()


def test_bf16_ctc_output_layer_is_fp32(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from test_conversion_ctc import letter_dictionary, save_fairseq_wav2vec2

    from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig

    pre = save_fairseq_wav2vec2(tmp_path / "pretrained.pt")
    task = SimpleNamespace(target_dictionary=letter_dictionary(), blank_symbol="<s>")
    model = W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(pre), normalize=False, data=str(tmp_path),
                                              ddp_backend="legacy_ddp", apply_mask=False), task).eval()
    seen: dict[str, torch.dtype] = {}
    layer = model.w2v_encoder.w2v_model.encoder.layers[0]
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.__setitem__("layer", o[0].dtype)),
             model.w2v_encoder.proj.register_forward_hook(lambda m, i, o: seen.__setitem__("proj_in", i[0].dtype))]
    with torch.no_grad(), step_autocast("bf16", "cpu"):
        out = model(source=audio(2, 8000), padding_mask=None)
    for h in hooks:
        h.remove()
    assert seen["layer"] == BF16  # the context network runs in bf16 ...
    assert seen["proj_in"] == torch.float32 and out["encoder_out"].dtype == torch.float32  # ... its output layer not


def test_cpu_steps_bound_onednn_primitive_cache_unless_the_user_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's first CPU step, train or valid, bf16 or fp32 (fairseq's own step), sets
    ONEDNN_PRIMITIVE_CACHE_CAPACITY (per-shape channels-last conv primitives otherwise pile up to
    ~1 GB of RSS); a value the user exported is kept; a GPU step leaves oneDNN as it is. Until
    2026-12-07 the fp32 task step skipped it (only ``step_autocast`` set it): the test now goes
    through the task, as a real run does."""
    from fairseq.tasks import FairseqTask

    from w2v2_plugin import precision
    from w2v2_plugin.tasks.finetuning import W2v2FinetuningConfig, W2v2FinetuningTask

    monkeypatch.setattr(FairseqTask, "train_step", lambda self, *a, **k: (0, 1, {}))
    monkeypatch.setattr(FairseqTask, "valid_step", lambda self, *a, **k: (0, 1, {}))
    model = tiny_model()

    def criterion(model: W2v2Model, sample: dict) -> tuple[torch.Tensor, int, dict]:
        return torch.zeros((), requires_grad=True), 1, {}

    class Optimizer:
        def backward(self, loss: torch.Tensor) -> None:
            loss.backward()

    steps = {"train": lambda task: task.train_step({}, model, criterion, Optimizer(), 0),
             "valid": lambda task: task.valid_step({}, model, criterion)}
    tasks = {"pretraining": lambda mode: W2v2PretrainingTask(W2v2PretrainingConfig(data="/nowhere", precision=mode)),
             "finetuning": lambda mode: W2v2FinetuningTask(W2v2FinetuningConfig(data="/nowhere", precision=mode))}
    users = ((None, str(precision.ONEDNN_CACHE_CAPACITY)), ("1024", "1024"))
    for mode, kind, name, (user_value, expected) in itertools.product(("bf16", "fp32"), tasks, steps, users):
        precision.bound_onednn_primitive_cache.cache_clear()
        if user_value is None:
            monkeypatch.delenv(precision.ONEDNN_CACHE_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(precision.ONEDNN_CACHE_VARIABLE, user_value)
        steps[name](tasks[kind](mode))
        assert os.environ.get(precision.ONEDNN_CACHE_VARIABLE) == expected, (kind, mode, name, user_value)
    precision.bound_onednn_primitive_cache.cache_clear()
    monkeypatch.delenv(precision.ONEDNN_CACHE_VARIABLE, raising=False)
    precision.prepare_step("cuda")
    with step_autocast("fp32", "cuda"):
        pass
    assert precision.ONEDNN_CACHE_VARIABLE not in os.environ
    precision.bound_onednn_primitive_cache.cache_clear()
