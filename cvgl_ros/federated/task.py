"""What the federation trains: the project's pose network on a vehicle's share of the pairs.

One place binds the federated code to the model (`cvgl_ros.models`), its training loop and
evaluation (`cvgl_ros.train`) and the pose metrics: building the model from the config,
one vehicle's local data, local epochs, evaluation and checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError
from cvgl_ros.federated.partition import PairSubset, cap_evenly, partition_dataset
from cvgl_ros.federated.settings import FederationSettings


class PoseTask:
    """The pose network of the run's model config, and the data each participant sees."""

    def __init__(self, settings: FederationSettings):
        from cvgl_ros.models import load_config
        from cvgl_ros.train.trainer import camera_from_meta

        self.settings = settings
        self._train: PairDataset | None = None
        # as `cvgl train`: the data's camera mounting goes into the model config
        self.config = camera_from_meta(load_config(settings.config_file or None), self.train_split.meta)

    # -- model --------------------------------------------------------------------------------
    def build_model(self):
        import torch

        from cvgl_ros.models import PoseNet

        torch.manual_seed(self.settings.seed)
        return PoseNet(self.config.model)

    # -- data ---------------------------------------------------------------------------------
    @property
    def train_split(self) -> PairDataset:
        if self._train is None:
            self._train = PairDataset(self.settings.data, "train")
        return self._train

    def vehicle_data(self, vehicle: int) -> PairSubset:
        parts = partition_dataset(self.train_split, self.settings.vehicles)
        if not 0 <= vehicle < len(parts):
            raise InputError(f"vehicle {vehicle} is outside the fleet of {len(parts)}")
        return PairSubset(self.train_split, cap_evenly(parts[vehicle].indices, self.settings.max_train_pairs))

    def all_train_data(self) -> PairSubset:
        """Centralized baseline: every vehicle's (capped) share together."""
        parts = partition_dataset(self.train_split, self.settings.vehicles)
        indices = [i for p in parts for i in cap_evenly(p.indices, self.settings.max_train_pairs)]
        return PairSubset(self.train_split, indices)

    def eval_data(self) -> PairSubset:
        split = PairDataset(self.settings.data, self.settings.eval_split)
        return PairSubset(split, cap_evenly(list(range(len(split))), self.settings.max_eval_pairs))

    # -- training and evaluation ----------------------------------------------------------------
    def train(self, model, dataset, epochs: int, round_index: int, rounds: int, progress: bool = False) -> dict:
        """`epochs` local epochs of `cvgl_ros.train.train_one_epoch` on `dataset`.

        A federated run of T rounds of E local epochs follows the schedule of a centralized
        run of T*E epochs: epoch numbers (loss-weight switch, augmentation seeds) and the
        cosine learning rate continue from round to round. The optimizer (Adam) starts
        afresh each round, as in classical FedAvg.
        """
        import torch

        from cvgl_ros.train.loop import train_one_epoch
        from cvgl_ros.train.trainer import make_optimizer

        t = self.config.train
        steps_per_epoch = max(1, len(dataset) // t.batch_size)
        first_epoch = (round_index - 1) * epochs
        # `cvgl train`'s optimizer and schedule (warm-up, cosine) over all rounds x local epochs,
        # entered at this round's step
        whole_run = self.config.replace(train=t.replace(epochs=rounds * epochs))
        optimizer, schedule = make_optimizer(model, whole_run, steps_per_epoch)
        factor = schedule.lr_lambdas[0]
        offset = first_epoch * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(offset + step))
        stats = {}
        for epoch in range(first_epoch, first_epoch + epochs):
            stats = train_one_epoch(model, dataset, optimizer, self.config, epoch, scheduler=scheduler,
                                    progress=progress)
        return stats

    def evaluate(self, model, dataset, progress: bool = False) -> dict:
        """The pose metrics of seeds 000/002 (recalls in %) of `model` on `dataset`."""
        from cvgl_ros.evaluation.pose_metrics import pose_metrics
        from cvgl_ros.train.loop import evaluate

        result = evaluate(model, dataset, self.config, progress=progress)
        metrics = pose_metrics(result["pose"], result["truth"])
        return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}

    def save(self, model, path: str | Path, dataset=None, server_round: int = 0, **federated) -> Path:
        """A `cvgl train` checkpoint (`cvgl export --ckpt` reads it), with the federated provenance."""
        from cvgl_ros.train.checkpoint import save_checkpoint

        split = self.train_split
        provenance = {"data": self.settings.data, "config_file": self.settings.config_file or None,
                      "command": federated.pop("command", "cvgl federated"),
                      "train_pairs": len(dataset) if dataset is not None else len(split),
                      "worlds": split.index.get("worlds", {}), "data_meta": split.meta,
                      "federated": {"vehicles": self.settings.vehicles, "rounds": self.settings.rounds,
                                    "local_epochs": self.settings.local_epochs, **federated}}
        return save_checkpoint(path, model=model, epoch=server_round * self.settings.local_epochs, config=self.config,
                               history=[], provenance=provenance)
