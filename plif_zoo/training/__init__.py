"""The paper's training recipe (Sec. 4), evaluation with spike statistics, and fine-tuning.

Recipe defaults (authors' ``train.py``): Adam lr 1e-3, CosineAnnealingLR(T_max=64) stepped
per epoch, MSE between the voted firing rates and the one-hot label, batch 16, seed 2020.
``configs/{model-id}.yaml`` holds only what differs for a model; every value can be
overridden. Each epoch tracks both accuracy protocols:

* accuracy-A: the best test accuracy seen so far;
* accuracy-B: the test accuracy of the epoch with the best validation accuracy
  (validation = the first 15% of each training class, see ``plif_zoo.data``).

A run folder holds ``metrics.csv``, ``tau.csv`` (tau of every PLIF layer, epoch 0 = init),
TensorBoard events in ``tb/``, ``checkpoint.pt`` (weights, optimizer, scheduler, RNG
state, position in the epoch; written atomically, loadable with ``weights_only=True``) and
``best/``, a zoo model folder of the epoch with the best validation accuracy. ``resume=True``
continues exactly where ``checkpoint.pt`` ended, also in the middle of an epoch
(``checkpoint_every`` steps).

Faults: ``checkpoint.pt.sha256`` records the checkpoint's sha256 (checked on resume; older
checkpoints without it are checked by their zip CRCs); ``train.lock`` (flock, names the holder)
keeps a second training out of the folder; a resume repairs what a kill left (``best.tmp``,
``best.old``, temporary files); a NaN / inf loss or weight stops the run before anything is
saved; a read-only folder or a full disk is a one-line RunFolderError.

Distributed: started by ``torchrun`` (``WORLD_SIZE`` > 1), gloo on CPU, NCCL on GPU; each
rank sees its ``DistributedSampler`` shard and only rank 0 writes.

Modules, each one concern: ``config`` (TrainConfig), ``runtime`` (ranks, device, autocast),
``datasets``, ``evaluation``, ``checkpoint``, ``state`` (RunState, Tally, TrainResult),
``run_dir`` (CSV, summary, best/), ``run_lock`` (one run per folder, disk errors), ``plots``,
``build`` (Run: model, data, optimizer; fine-tuning's pretrained load and frozen features),
``loop`` (train_one_epoch, train, finetune).
"""

from .checkpoint import load_checkpoint
from .config import CONFIG_DIR, TrainConfig, dataset_of, load_config
from .datasets import eval_slice
from .evaluation import SpikeCounter, evaluate
from .loop import finetune, train, train_one_epoch
from .plots import plot_run
from .run_dir import plif_taus
from .state import RunState, Tally, TrainResult

__all__ = [
    "TrainConfig",
    "load_config",
    "train",
    "evaluate",
    "finetune",
    "plif_taus",
    "plot_run",
    "load_checkpoint",
    "CONFIG_DIR",
    "dataset_of",
    "eval_slice",
    "SpikeCounter",
    "RunState",
    "Tally",
    "TrainResult",
    "train_one_epoch",
]
