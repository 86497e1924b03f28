"""Multi-process training with PyTorch DistributedDataParallel.

Launch with torchrun (``torchrun --nproc_per_node N -m allnet_training.cli train ...``;
multi-node: add ``--nnodes``/``--rdzv-endpoint``): :func:`init_from_env` then joins the
process group (NCCL on CUDA, gloo on CPU). The global batch is split across ranks by
``trainer.train`` (rank r takes slice r), so the data seen per step does not depend on
the number of processes. :func:`spawn_cpu` runs N CPU processes with gloo on one machine
without torchrun (tests, quick checks).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from allnet.model import ModelConfig

from .cache import load_cached
from .patches import CropSampler, SamplerConfig
from .trainer import TrainConfig, train


def init_from_env() -> bool:
    """Join the process group described by torchrun's environment (WORLD_SIZE > 1).

    Returns True when running distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend)
    return True


def finish() -> None:
    """Wait until every rank got here (after a successful run), so no rank tears the group
    down while rank 0 still writes the model: with gloo that can abort the others at exit."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, model_config: ModelConfig, train_config: TrainConfig,
            sampler_config: SamplerConfig, cache_files: list[str], out_dir: str,
            threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cases = [load_cached(p) for p in cache_files]
        sampler = CropSampler(cases, sampler_config, model_config.modalities,
                              normalisation=model_config.normalisation,
                              noise_target=model_config.noise_target)
        train(model_config, train_config, sampler, out_dir, progress=False)
        finish()
    finally:
        dist.destroy_process_group()


def spawn_cpu(world: int, model_config: ModelConfig, train_config: TrainConfig,
              sampler_config: SamplerConfig, cache_files: list[str | Path], out_dir: str | Path,
              threads: int = 1) -> Path:
    """Train with ``world`` CPU processes (gloo) on this machine; rank 0 writes ``out_dir``
    (see ``trainer.train``). Synthetic lesions are not used here (no shape bank)."""
    mp.spawn(_worker, nprocs=world, join=True,
             args=(world, free_port(), model_config, train_config, sampler_config,
                   [str(p) for p in cache_files], str(out_dir), threads))
    return Path(out_dir)
