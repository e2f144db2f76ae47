"""EchoTrainer: ESPnet's Trainer that writes each epoch's training CPU seconds (:mod:`echo_plugin.train.epoch_cpu`).

It overrides ``train_one_epoch``, the extension point ESPnet's trainer documents, and changes nothing it
trains: the measurement is taken around ESPnet's own ``train_one_epoch``. A distributed run sums the ranks'
seconds; rank 0 writes them, with the setup they were measured in (device, threads, processes). Validation
is not counted.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions

from echo_plugin.train.epoch_cpu import process_cpu_seconds, setup_label, write_epoch_cpu


class EchoTrainer(Trainer):
    """ESPnet's Trainer; each epoch's training CPU seconds go to ``<output_dir>/train_cpu_seconds.json``."""

    @classmethod
    def train_one_epoch(cls, model: torch.nn.Module, iterator: Any, optimizers: Any, schedulers: Any,
                        scaler: Any, reporter: SubReporter, summary_writer: Any, options: TrainerOptions,
                        distributed_option: DistributedOption) -> bool:
        """ESPnet's epoch of training (returns whether every step was invalid), its CPU seconds written."""
        start = process_cpu_seconds()
        result = super().train_one_epoch(model, iterator, optimizers, schedulers, scaler, reporter,
                                         summary_writer, options, distributed_option)
        seconds = process_cpu_seconds() - start
        device = "cuda" if options.ngpu > 0 else "cpu"  # as ESPnet's own all_reduce in train_one_epoch
        processes = 1
        if distributed_option.distributed and dist.is_initialized():
            total = torch.tensor([seconds], dtype=torch.float64, device=device)
            dist.all_reduce(total)  # every rank reaches it: ESPnet's epoch ends on every rank together
            seconds, processes = float(total.item()), dist.get_world_size()
        if not distributed_option.distributed or distributed_option.dist_rank == 0:
            setup = setup_label(device, torch.get_num_threads(), processes)
            try:
                write_epoch_cpu(Path(options.output_dir), reporter.get_epoch(), seconds, setup)
            except OSError as err:  # a measurement never ends a training
                logging.warning("train_cpu_seconds: epoch %d not written: %s", reporter.get_epoch(), err)
        return result
