"""w2v2_finetuning task: label datasets, dictionaries, bad-input errors, plain task state."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from helpers import write_tone

from w2v2_plugin.data.labels import LabelError, dictionary_from_state, dictionary_to_state
from w2v2_plugin.tasks.finetuning import W2v2FinetuningConfig, W2v2FinetuningTask

TEXTS = ["HELLO WORLD", "A CAT", "THE DOG RAN", "WORLD"]


def ltr(text: str) -> str:
    return " ".join(text.replace(" ", "|")) + " |"


def write_corpus(root: Path, texts=TEXTS, seconds=(0.5, 0.6, 0.7, 0.4), split="train") -> Path:
    audio = root / "audio"
    lines = [str(audio)]
    for i, sec in enumerate(seconds):
        write_tone(audio / f"{split}{i}.wav", sec, seed=i)
        lines.append(f"{split}{i}.wav\t{int(sec * 16000)}")
    (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    (root / f"{split}.ltr").write_text("".join(ltr(t) + "\n" for t in texts))
    (root / f"{split}.wrd").write_text("".join(t + "\n" for t in texts))
    letters = sorted({c for t in texts for c in ltr(t).split()})
    (root / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in letters))
    return root


def make_task(root: Path, **kw) -> W2v2FinetuningTask:
    cfg = W2v2FinetuningConfig(data=str(root), labels=kw.pop("labels", "ltr"), tpu=False, seed=1, **kw)
    return W2v2FinetuningTask.setup_task(cfg)


def test_letter_targets_are_aligned_with_the_manifest(tmp_path):
    task = make_task(write_corpus(tmp_path))
    task.load_dataset("train")
    ds = task.datasets["train"]
    assert len(ds) == 4
    d = task.target_dictionary
    assert d[0] == "<s>" and task.blank_symbol == "<s>"  # index 0 is the CTC blank
    for i, text in enumerate(TEXTS):
        item = ds[i]
        assert d.string(item["label"]) == ltr(text)
    batch = ds.collater([ds[0], ds[1]])
    assert batch["target"].shape == (2, len(ltr(TEXTS[0]).split()))
    assert batch["target_lengths"].tolist() == [len(ltr(t).split()) for t in TEXTS[:2]]
    assert batch["net_input"]["padding_mask"].shape == batch["net_input"]["source"].shape


def test_skipped_short_utterances_drop_their_labels(tmp_path):
    task = make_task(write_corpus(tmp_path), min_sample_size=int(0.45 * 16000))
    task.load_dataset("train")
    ds = task.datasets["train"]
    assert len(ds) == 3  # the 0.4 s utterance (line 4) is skipped with its transcript
    got = sorted(task.target_dictionary.string(ds[i]["label"]) for i in range(3))
    assert got == sorted(ltr(t) for t in TEXTS[:3])


@pytest.mark.parametrize("n_labels, word", [(3, "fewer"), (5, "more")])
def test_label_count_mismatch(tmp_path, n_labels, word):
    root = write_corpus(tmp_path)
    texts = (TEXTS + ["EXTRA"])[:n_labels]
    (root / "train.ltr").write_text("".join(ltr(t) + "\n" for t in texts))
    task = make_task(root)
    with pytest.raises(LabelError, match=rf"train\.ltr: {n_labels} transcript lines but .*train\.tsv "
                                         rf"has 4 audio entries \({word} labels"):
        task.load_dataset("train")


def test_unknown_characters_listed_with_counts_and_first_line(tmp_path):
    root = write_corpus(tmp_path)
    (root / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in "|HELOWRDACT"))
    task = make_task(root)
    with pytest.raises(LabelError) as e:
        task.load_dataset("train")
    msg = str(e.value)
    assert "\n" not in msg and "train.ltr" in msg and "dict.ltr.txt" in msg
    # THE DOG RAN (line 3) brings G, N; ... 'N' x1, 'G' x1 -- both first on line 3
    assert "2 symbols are not in" in msg
    assert "'G' x1 (first on line 3)" in msg and "'N' x1 (first on line 3)" in msg


def test_empty_transcript(tmp_path):
    root = write_corpus(tmp_path)
    lines = [ltr(t) for t in TEXTS]
    lines[1] = " |"
    (root / "train.ltr").write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelError, match=r"train\.ltr:2: empty transcript"):
        make_task(root).load_dataset("train")


def test_missing_files_and_settings(tmp_path):
    root = write_corpus(tmp_path)
    (root / "dict.ltr.txt").unlink()
    with pytest.raises(LabelError, match=r"dict\.ltr\.txt: target dictionary not found"):
        make_task(root).load_dataset("train")
    root = write_corpus(tmp_path / "b")
    (root / "train.ltr").unlink()
    with pytest.raises(LabelError, match=r"train\.ltr: label file not found"):
        make_task(root).load_dataset("train")
    with pytest.raises(LabelError, match="task.labels is not set"):
        make_task(root, labels=None).load_dataset("train")


def test_bad_dictionary_line(tmp_path):
    root = write_corpus(tmp_path)
    (root / "dict.ltr.txt").write_text("A 1\nB\n")
    with pytest.raises(LabelError, match=r"dict\.ltr\.txt:2: expected '<symbol> <count>'"):
        make_task(root).load_dataset("train")


def test_task_state_is_plain_data(tmp_path):
    task = make_task(write_corpus(tmp_path))
    task.load_dataset("train")
    buf = io.BytesIO()
    torch.save(task.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # refuses any pickled class
    other = make_task(tmp_path)
    other.load_state_dict(state)
    assert other.target_dictionary.symbols == task.target_dictionary.symbols
    assert other.target_dictionary.pad() == task.target_dictionary.pad()
    d = task.target_dictionary
    assert dictionary_from_state(dictionary_to_state(d)).indices == d.indices


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    import sentencepiece as spm

    out = tmp_path_factory.mktemp("spm")
    text = out / "text.txt"
    text.write_text("\n".join(TEXTS * 20 + ["HOW NOW BROWN COW", "CATS AND DOGS"] * 10) + "\n")
    spm.SentencePieceTrainer.Train(input=str(text), model_prefix=str(out / "m"), vocab_size=24,
                                   model_type="unigram", character_coverage=1.0,
                                   bos_id=-1, eos_id=-1, minloglevel=2)
    return out / "m.model"


def test_sentencepiece_units(tmp_path, spm_model):
    task = make_task(write_corpus(tmp_path), labels="wrd", sentencepiece_model=str(spm_model))
    task.load_dataset("train")
    d = task.target_dictionary
    assert d[0] == "<s>" and d.unk() == 3 and "\u2581" in "".join(d.symbols)
    from fairseq.data.data_utils import post_process

    ds = task.datasets["train"]
    for i, text in enumerate(TEXTS):
        units = d.string(ds[i]["label"])
        assert d.unk_word not in units
        assert post_process(units, "sentencepiece") == text


def test_sentencepiece_unknown_characters(tmp_path, spm_model):
    texts = ["HELLO WORLD", "A CAT", "THE DÖG RAN", "WORLD Ö"]
    task = make_task(write_corpus(tmp_path, texts=texts), labels="wrd",
                     sentencepiece_model=str(spm_model))
    with pytest.raises(LabelError, match=r"train\.wrd: 1 characters cannot be encoded by "
                                         r"sentencepiece model .*'Ö' x2 \(first on line 3\)"):
        task.load_dataset("train")


def test_utterance_longer_than_max_tokens_is_named(tmp_path):
    task = make_task(write_corpus(tmp_path))
    task.load_dataset("train")
    with pytest.raises(LabelError, match=r"train\.tsv:3: 2 utterances are longer than "
                                         r"dataset\.max_tokens=9000 samples \(longest 11200\)"):
        task.get_batch_iterator(task.datasets["train"], max_tokens=9000)
    itr = task.get_batch_iterator(task.datasets["train"], max_tokens=12000)
    assert sum(len(b["id"]) for b in itr.next_epoch_itr(shuffle=False)) == 4
