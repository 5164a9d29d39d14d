"""Process-group setup from what the launcher provides, and the few collectives training needs.

``torchrun`` passes RANK / WORLD_SIZE / LOCAL_RANK in the environment; the older
``python -m torch.distributed.launch`` also passes ``--local_rank=K`` (or ``--local-rank``).
Both end up here. NCCL on GPUs, gloo on CPU, unless overridden.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class LaunchError(RuntimeError):
    """The job was started in a way that cannot work (missing launcher variables, no GPU)."""


def init_distributed(
    local_rank_arg: int = -1, backend: str = "auto", timeout_minutes: float = 30.0
) -> DistContext:
    """Join the process group if launched by torchrun / torch.distributed.launch."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and local_rank_arg < 0:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(device=device)
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        raise LaunchError(
            "--local_rank was given but RANK/WORLD_SIZE/MASTER_ADDR are not set: start the "
            "job with torchrun or python -m torch.distributed.launch"
        )
    rank = int(os.environ["RANK"])
    watch_launcher(f"LSP_train.py [rank {rank}/{world_size}]")
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank_arg))
    use_cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        raise LaunchError("--dist_backend nccl needs CUDA GPUs and none is visible; use gloo")
    if use_cuda and not 0 <= local_rank < torch.cuda.device_count():
        raise LaunchError(
            f"local rank {local_rank} has no GPU: this node shows "
            f"{torch.cuda.device_count()}; lower --nproc_per_node"
        )
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    kwargs: dict[str, Any] = {
        "backend": backend,
        "init_method": "env://",
        "timeout": datetime.timedelta(minutes=timeout_minutes),
    }
    if backend == "nccl":
        kwargs["device_id"] = device  # binds the communicator to this rank's GPU up front
    dist.init_process_group(**kwargs)
    return DistContext(
        rank=rank,
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        device=device,
        backend=backend,
    )


def watch_launcher(name: str, interval: float = 1.0) -> threading.Thread | None:
    """Exit this process when the process that started it (the launcher) is gone.

    torchrun starts each rank in its own process group, so killing the launcher's group
    (or the launcher with SIGKILL) does not reach the ranks: orphans would train on,
    holding GPUs and writing checkpoints. A daemon thread polls the parent pid (a change
    means this process was re-parented) and leaves at once, as a failing rank does; the
    other ranks notice their own launcher the same way. Returns the thread (None when
    there is no launcher to watch).
    """
    launcher = os.getppid()
    if launcher <= 1:  # already re-parented: nothing to watch
        return None

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(interval)
        print(f"{name}: the launcher (pid {launcher}) is gone; exiting", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)

    thread = threading.Thread(target=watch, name="watch-launcher", daemon=True)
    thread.start()
    return thread


def sum_over_ranks(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (one collective)."""
    if not ctx.enabled:
        return list(values)
    device = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable, our own process's data), in rank order."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
