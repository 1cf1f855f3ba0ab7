"""The Trainer that pretraining runs: transformers' own, with five pretraining-specific changes.

1. Order and resume. Blocks are read in index order (the index already mixes and shuffles), starting at the
   sample where the resumed step begins. transformers would instead replay the sampler up to that point
   (`skip_first_batches` enumerates every earlier batch: minutes after billions of samples, on every rank);
   starting the sampler there is exact and O(1), so the Trainer's own skip is turned off (`ignore_data_skip`).
2. One schedule across stages: the scheduler spans every stage's steps even when `max_steps` stops earlier.
3. Stage switches: at a stage's first step the RoPE base and maximum positions change when the stage says so
   (context extension), also on a resume that lands in or on the edge of that stage.
4. Logs: stage, tokens drawn from each source, tokens/s and MFU over the last logging interval.
5. Saving: DeepSpeed ZeRO-3's consolidated state dict can hold only one name of the tied embedding / head pair;
   the missing one is filled in before saving, so the checkpoint always reloads with its trained embeddings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from ..packing import VARLEN_ATTENTION, block_causal_mask, document_offsets
from ..mfu import device_peak_flops, flops_per_token, mfu


def document_positions(input_ids, separator_id: int):
    """Per-document position ids: 0 at the start of the block and after every separator (<|endoftext|>)."""
    length = input_ids.shape[-1]
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = input_ids[:, :-1] == separator_id
    index = torch.arange(length, device=input_ids.device).expand_as(input_ids)
    return index - torch.where(starts, index, 0).cummax(dim=-1).values


@dataclass
class BlockCollator:
    """Blocks -> a batch. Plain causal attention across documents by default, as SmolLM2 trained; with
    `cross_document_attention=False` each document attends only to itself and no label crosses a boundary."""

    separator_id: int
    cross_document_attention: bool = True
    attn_implementation: str = "sdpa"
    by_document: bool = False  # document offsets for `sdpa_by_document` (sdpa on CPU) instead of the 4-D mask

    def __call__(self, examples: list[dict]) -> dict:
        input_ids = torch.from_numpy(np.stack([example["input_ids"] for example in examples]))
        if self.cross_document_attention:
            return {"input_ids": input_ids, "labels": input_ids}
        positions = document_positions(input_ids, self.separator_id)
        labels = input_ids.clone()
        labels[positions == 0] = -100  # the first token of a document is not predicted from the one before
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": positions}
        if self.by_document:
            offsets = document_offsets(positions, torch.ones_like(input_ids))
            batch["cu_seq_lens_q"] = offsets
            batch["max_length_q"] = int((offsets[1:] - offsets[:-1]).max())
        elif self.attn_implementation not in VARLEN_ATTENTION:  # flash kernels read boundaries from position ids
            batch["attention_mask"] = block_causal_mask(positions, torch.ones_like(input_ids),
                                                        additive=self.attn_implementation != "sdpa")
        return batch


class StartAtStepSampler(torch.utils.data.Sampler):
    """Sample numbers in order, from the first sample of the step the trainer is at when iteration starts."""

    def __init__(self, length: int, trainer: "PretrainTrainer"):
        self.length, self.trainer = length, trainer

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        start = self.trainer.state.global_step * self.trainer.plan.samples_per_step
        return iter(range(min(start, self.length), self.length))


def rope_by_stage(plan, config) -> list[tuple[float, int]]:
    """(rope_theta, max_position_embeddings) in force during each stage: a stage keeps what the one before set."""
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    positions = config.max_position_embeddings
    out = []
    for stage in plan.stages:
        theta = stage.rope_theta or theta
        positions = stage.max_position_embeddings or max(positions, stage.block_size)
        out.append((theta, positions))
    return out


def apply_rope(model, config, theta: float, positions: int) -> bool:
    """Set the RoPE base and context length in the config and recompute every rotary table. True if changed."""
    params = dict(getattr(config, "rope_parameters", None) or {"rope_type": "default"})
    if params.get("rope_theta") == theta and config.max_position_embeddings == positions:
        return False
    config.rope_parameters = {**params, "rope_theta": theta}
    config.max_position_embeddings = positions
    for module in model.modules():
        if isinstance(getattr(module, "inv_freq", None), torch.Tensor) and hasattr(module, "rope_type"):
            module.config = config
            fresh = type(module)(config)  # the model's own rotary class computes the new table
            with torch.no_grad():
                module.inv_freq.copy_(fresh.inv_freq)
                if isinstance(getattr(module, "original_inv_freq", None), torch.Tensor):
                    module.original_inv_freq.copy_(fresh.original_inv_freq)
            module.attention_scaling = fresh.attention_scaling
            module.max_seq_len_cached = module.original_max_seq_len = positions
    return True


class StageSwitch(TrainerCallback):
    """Applies each stage's RoPE settings at its first step (and at the start of a run or a resume)."""

    def __init__(self, trainer: "PretrainTrainer"):
        self.trainer = trainer
        self.current = None

    def _apply(self, state):
        stage = self.trainer.plan.stage_at(state.global_step)
        if stage == self.current:
            return
        self.current = stage
        theta, positions = self.trainer.rope[stage]
        model = self.trainer.model
        if apply_rope(model, self.trainer.accelerator.unwrap_model(model).config, theta, positions) and \
                state.is_world_process_zero:
            print(f"stage {self.trainer.plan.stages[stage].name}: rope_theta {theta:g}, max positions {positions}",
                  flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state)


def complete_tied_weights(state_dict: dict, model) -> dict:
    """With tied input/output embeddings, make sure the state dict names both (ZeRO-3 may keep only one)."""
    config = getattr(model, "config", None)
    if not state_dict or not getattr(config, "tie_word_embeddings", False):
        return state_dict
    names = {id(module): name for name, module in model.named_modules()}
    embed = names.get(id(model.get_input_embeddings()))
    head = names.get(id(model.get_output_embeddings()))
    if embed is None or head is None:
        return state_dict
    embed, head = f"{embed}.weight" if embed else "weight", f"{head}.weight" if head else "weight"
    if embed not in state_dict and head in state_dict:
        state_dict[embed] = state_dict[head]
    elif head not in state_dict and embed in state_dict:
        state_dict[head] = state_dict[embed]
    return state_dict


class PretrainTrainer(Trainer):
    def __init__(self, *args, plan, index, parameters: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan, self.index, self.parameters = plan, index, parameters
        self.rope = rope_by_stage(plan, self.model.config)
        self.peak, self.device_name = device_peak_flops()
        self.summary: dict = {"device": self.device_name}
        self._rate_mark = None
        self.add_callback(StageSwitch(self))

    def _get_train_sampler(self, train_dataset=None):
        return StartAtStepSampler(len(train_dataset if train_dataset is not None else self.train_dataset), self)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        return super().create_scheduler(self.plan.total_steps, optimizer)

    def _track_num_input_tokens(self, inputs):
        """Every process trains a batch of the same shape: no gather needed to count exactly."""
        if self.args.include_num_input_tokens_seen != "no":
            self.state.num_input_tokens_seen += inputs["input_ids"].numel() * self.args.world_size

    def log(self, logs: dict, start_time: float | None = None) -> None:
        # One pass over the index is the whole plan. transformers counts the epoch from the batches it drew since
        # train() began, which a resume restarts (the sampler starts at the resumed step): count it from the step.
        self.state.epoch = self.state.global_step / self.plan.total_steps
        if "loss" in logs:
            self._add_pretrain_logs(logs, start_time)
        super().log(logs, start_time)

    def _add_pretrain_logs(self, logs: dict, start_time: float | None) -> None:
        step = self.state.global_step
        stage = self.plan.stage_at(max(step - 1, 0))
        logs["stage"] = stage + 1
        for name, tokens in self.index.tokens_by_source(step * self.plan.samples_per_step).items():
            logs[f"tokens/{name}"] = tokens
        now, tokens = time.time(), self.state.num_input_tokens_seen
        if self._rate_mark is None:
            self._rate_mark = (start_time or now, getattr(self, "_initial_num_input_tokens_seen", 0))
        seconds, counted = now - self._rate_mark[0], tokens - self._rate_mark[1]
        self._rate_mark = (now, tokens)
        if seconds > 0 and counted > 0:
            rate = counted / seconds
            logs["tokens_per_second"] = rate
            per_token = flops_per_token(self.parameters, self.model.config, self.plan.stages[stage].block_size)
            utilisation = mfu(rate, per_token, self.peak, self.args.world_size)
            if utilisation is not None:
                logs["mfu"] = utilisation
            self.summary.update({"tokens/s (last log)": rate, "mfu (last log)": utilisation})
        self.summary.update({"stage": self.plan.stages[stage].name, "loss (last log)": logs["loss"]})

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if state_dict is not None:
            state_dict = complete_tied_weights(state_dict, self.accelerator.unwrap_model(self.model))
        super()._save(output_dir, state_dict=state_dict)
