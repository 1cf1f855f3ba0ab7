"""Packed rows keep documents apart by construction: checked through the real SFTTrainer's own loss and inputs."""

import pytest

from .conftest import DEBUG_DIR

# Lengths differ so that BFD puts several documents in a row and leaves some rows short (padded).
ANSWERS = ["sun " * n for n in (1, 3, 7, 12, 2, 20, 5, 9, 4, 15, 6, 1)]


def packed_trainer(tmp_path, attn="sdpa", **training):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from smolalign.model.build import build_model
    from smolalign.train.templates import prepare_chat_tokenizer
    from smolalign.train.packing import use_packed_rows

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    prepare_chat_tokenizer(tokenizer)
    rows = [{"messages": [{"role": "user", "content": f"Repeat the word sun {len(a.split())} times."},
                          {"role": "assistant", "content": a.strip()}]} for a in ANSWERS]
    settings = dict(output_dir=str(tmp_path / "out"), bf16=False, activation_checkpointing=False,
                    assistant_only_loss=True, report_to=[], max_length=96, packing=True,
                    per_device_train_batch_size=3, include_num_input_tokens_seen="non_padding", seed=0,
                    dataloader_pin_memory=False)
    model = build_model("tiny", tokenizer, seed=1)
    model.config._attn_implementation = attn
    trainer = SFTTrainer(model=model, args=SFTConfig(**{**settings, **training}),
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
    assert use_packed_rows(trainer, attn)
    return trainer


def documents(batch):
    """(row, start, end) of every real document, read from the position ids (0 starts a document)."""
    found = []
    for row, (positions, ids) in enumerate(zip(batch["position_ids"].tolist(), batch["input_ids"].tolist())):
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        for start, end in zip(starts, starts[1:]):
            if end - start > 1:  # padding: one-token "documents" at position 0
                found.append((row, start, end))
    return found


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def trainer(request, tmp_path_factory):
    return packed_trainer(tmp_path_factory.mktemp(request.param), attn=request.param)


def test_collator_makes_every_document_boundary_explicit(trainer):
    """sdpa on CPU: document offsets for `sdpa_by_document`; eager: a 4-D block-causal mask."""
    import torch

    batch = first_batch(trainer)
    rows, length = batch["input_ids"].shape
    docs = documents(batch)
    assert len(docs) > rows, "the fixture must pack several documents into a row"
    if trainer.args.packing and trainer.model.config._attn_implementation == "sdpa_by_document":
        assert "attention_mask" not in batch
        offsets = batch["cu_seq_lens_q"].tolist()
        real = batch["input_ids"] != trainer.processing_class.pad_token_id
        for row, start, end in docs:  # each document is exactly one segment
            assert row * length + start in offsets and row * length + end in offsets
            assert not any(row * length + start < o < row * length + end for o in offsets)
        for row in range(rows):  # a row's padding is one segment after its last document, then the next row
            pads = int((~real[row]).sum())
            if pads:
                assert (row + 1) * length - pads in offsets
            assert not any((row + 1) * length - pads < o < (row + 1) * length for o in offsets)
        return
    mask = batch["attention_mask"]
    assert mask.shape == (rows, 1, length, length)
    allowed = mask if mask.dtype == torch.bool else mask == 0
    for row, start, end in docs:
        inside = allowed[row, 0, start:end, start:end]
        n = end - start
        assert torch.equal(inside, torch.ones(n, n, dtype=torch.bool).tril()), "causal inside a document"
        assert not allowed[row, 0, start:end, :start].any(), "nothing before the document is visible"


def test_packed_loss_is_the_token_weighted_loss_of_documents_alone(trainer):
    import torch

    batch = first_batch(trainer)
    trainer.model.eval()
    with torch.no_grad():
        packed = trainer.compute_loss(trainer.model, dict(batch)).item()
        total, weight = 0.0, 0
        for row, start, end in documents(batch):
            labels = batch["labels"][row:row + 1, start:end]
            alone = {"input_ids": batch["input_ids"][row:row + 1, start:end], "labels": labels,
                     "attention_mask": torch.ones_like(labels)}
            n = int((labels[:, 1:] != -100).sum())
            if n:
                total += trainer.compute_loss(trainer.model, alone).item() * n
                weight += n
    assert packed == pytest.approx(total / weight, rel=1e-5)


@pytest.mark.parametrize("use_cache", [False, True])
def test_a_changed_token_changes_no_other_document(trainer, use_cache):
    """With a KV cache transformers no longer reads boundaries from position ids: the explicit boundaries must
    hold."""
    import torch

    batch = first_batch(trainer)
    row, start, end = next(d for d in documents(batch) if sum(1 for e in documents(batch) if e[0] == d[0]) > 1)
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    changed["input_ids"][row, start + 1] = (changed["input_ids"][row, start + 1] + 1) % len(trainer.processing_class)
    trainer.model.eval()
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        before = trainer.model(**inputs, use_cache=use_cache).logits
        after = trainer.model(**{**inputs, "input_ids": changed["input_ids"]}, use_cache=use_cache).logits
    assert not torch.allclose(before[row, start + 1:end], after[row, start + 1:end]), "the changed document moved"
    for other_row, other_start, other_end in documents(batch):
        if (other_row, other_start) != (row, start):
            torch.testing.assert_close(after[other_row, other_start:other_end],
                                       before[other_row, other_start:other_end], rtol=0, atol=0)


def test_token_counters_count_real_tokens(tmp_path):
    """One epoch sees every packed token once, whatever the order: the Trainer's and TRL's counts equal it."""
    trainer = packed_trainer(tmp_path, num_train_epochs=1, logging_steps=1, save_strategy="no")
    real = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    assert trainer.state.num_input_tokens_seen == real
    logged = [log["num_tokens"] for log in trainer.state.log_history if "num_tokens" in log]
    assert logged and logged[-1] == real


def test_torch_compile_gets_one_fixed_shape(tmp_path):
    trainer = packed_trainer(tmp_path, torch_compile=True)
    shapes = {tuple(batch["input_ids"].shape[1:]) for batch in trainer.get_train_dataloader()}
    assert shapes == {(trainer.args.max_length,)}


@pytest.mark.parametrize("setting,attn,device,way", [
    ("auto", "sdpa", "cpu", "by_document"), ("auto", "sdpa", "cuda", "mask"), ("auto", "eager", "cpu", "mask"),
    ("auto", "flash_attention_2", "cuda", "kernel"), ("varlen", "sdpa", "cuda", "varlen"),
    ("varlen", "eager", "cuda", "mask"), ("mask", "sdpa", "cpu", "mask"), ("by_document", "sdpa", "cuda", "by_document"),
])
def test_the_way_packed_documents_are_kept_apart(setting, attn, device, way):
    """`auto` is per-document sdpa on CPU and the 4-D mask on a GPU until bench/gpu.sh has measured varlen there."""
    from smolalign.train.packing import choose_packed_attention

    assert choose_packed_attention(setting, attn, device) == way


def reference_varlen(query, key, value, offsets, longest, scale, gqa):
    """A CPU stand-in for torch's CUDA-only varlen kernel (injected, said so): causal sdpa on each segment of the
    flattened [tokens, heads, dim] layout. It checks what smolalign does around the kernel: flattening, offsets, GQA
    and the shape back; bench/gpu.sh checks the kernel itself against the 4-D mask on a GPU."""
    import torch

    bounds = offsets.tolist()
    assert longest == max(b - a for a, b in zip(bounds, bounds[1:]))
    pieces = [torch.nn.functional.scaled_dot_product_attention(
        query[a:b].transpose(0, 1), key[a:b].transpose(0, 1), value[a:b].transpose(0, 1), is_causal=True,
        scale=scale, enable_gqa=gqa).transpose(0, 1) for a, b in zip(bounds, bounds[1:])]
    return torch.cat(pieces)


@pytest.mark.parametrize("api", ["torch 2.11", "torch 2.13"])
def test_the_varlen_call_fits_each_torch_api_and_repeats_shared_heads_where_there_is_no_gqa(monkeypatch, api):
    """torch 2.11's varlen_attn takes `is_causal` and has no `enable_gqa` (a TypeError on an H200); later ones take
    a window and `enable_gqa`. Injected, said so: stand-ins with each signature, computing as reference_varlen."""
    import torch
    import torch.nn.attention.varlen as varlen

    from smolalign.train.packing import _causal_varlen, _varlen_parameters

    def as_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, is_causal=False):
        assert is_causal and key.shape[1] == query.shape[1], "2.11 has no GQA: key heads must be repeated"
        return reference_varlen(query, key, value, cu_seq_q, max_q, scale, False)

    def as_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                enable_gqa=False):
        assert window_size == (-1, 0) and enable_gqa
        return reference_varlen(query, key, value, cu_seq_q, max_q, scale, True)

    monkeypatch.setattr(varlen, "varlen_attn", as_2_11 if api == "torch 2.11" else as_2_13)
    _varlen_parameters.cache_clear()  # the signature is read once a process: read the stand-in's
    torch.manual_seed(0)
    query, key, value = torch.randn(10, 6, 8), torch.randn(10, 2, 8), torch.randn(10, 2, 8)
    offsets = torch.tensor([0, 3, 10], dtype=torch.int32)
    out = _causal_varlen(query, key, value, offsets, 7, 0.25, True)
    torch.testing.assert_close(out, reference_varlen(query, key, value, offsets, 7, 0.25, True))
    _varlen_parameters.cache_clear()


def test_the_varlen_twin_equals_the_4d_mask_in_outputs_and_gradients(tmp_path):
    import functools

    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    from smolalign.train.packing import _mask_for_document_attention, block_causal_mask, sdpa_varlen

    trainer = packed_trainer(tmp_path, attn="sdpa")  # on CPU its batches carry the document offsets
    batch = first_batch(trainer)
    model = trainer.model
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA is exercised
    AttentionInterface.register("varlen_stand_in", functools.partial(sdpa_varlen, kernel=reference_varlen))
    AttentionMaskInterface.register("varlen_stand_in", _mask_for_document_attention)
    real = batch["input_ids"] != trainer.processing_class.pad_token_id
    runs = {}
    for name, extra in (("sdpa", {"attention_mask": block_causal_mask(batch["position_ids"], real)}),
                        ("varlen_stand_in", {"cu_seq_lens_q": batch["cu_seq_lens_q"],
                                             "max_length_q": batch["max_length_q"]})):
        model.config._attn_implementation = name
        model.zero_grad()
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                    use_cache=False, **extra)
        out.loss.backward()
        runs[name] = (out.logits.detach(), [p.grad.clone() for p in model.parameters()])
    (mask_logits, mask_grads), (varlen_logits, varlen_grads) = runs["sdpa"], runs["varlen_stand_in"]
    rows = real.unsqueeze(-1)  # padding positions attend differently (alone vs. as one segment): not compared
    torch.testing.assert_close(varlen_logits * rows, mask_logits * rows, rtol=1e-5, atol=1e-5)
    for a, b in zip(varlen_grads, mask_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
