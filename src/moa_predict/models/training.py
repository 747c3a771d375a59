"""The one torch training loop shared by every network in moa-predict.

Networks output logits; the loss is binary cross-entropy on logits (numerically the
same as the paper's sigmoid + BCE, without its overflow), with optional label
smoothing. Seeds are set for torch and the data order, so training is repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class TrainConfig:
    epochs: int = 25
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    """'adam' or 'adamw'."""
    schedule: str = "none"
    """'none' or 'onecycle' (lr rises to max_lr then anneals; the top public recipes used it)."""
    max_lr: float = 1e-2
    label_smoothing: float = 0.0
    """Targets become y*(1-s) + s/2: the top solutions used s ≈ 0.001 against over-confident 0/1 calls."""
    grad_clip: float | None = None
    adam_eps: float = 1e-8
    """Adam's epsilon (torch default 1e-8; Keras uses 1e-7)."""
    seed: int = 0
    device: str = "cpu"
    progress: bool = False


def resolve_device(name: str) -> torch.device:
    """The torch device, with a clear message when CUDA was asked for but is absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit_network(module: nn.Module, X: np.ndarray, Y: np.ndarray, cfg: TrainConfig,
                on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> list[float]:
    """Train `module` (logits out) on X → Y in place; returns the mean training loss per epoch.

    `on_epoch_end(epoch, module)`, if given, is called after each epoch (1-based) with the module in eval
    mode (e.g. to snapshot validation predictions); training resumes in train mode afterwards.
    """
    device = resolve_device(cfg.device)
    gen = seed_everything(cfg.seed)
    module.to(device).train()
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
    Yt = torch.as_tensor(np.ascontiguousarray(Y, dtype=np.float32))
    if cfg.label_smoothing:
        Yt = Yt * (1.0 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    n = len(Xt)
    steps = math.ceil(n / cfg.batch_size)
    sched = None
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=steps,
                                                    pct_start=0.1, div_factor=1e3)
    loss_fn = nn.BCEWithLogitsLoss()
    history = []
    for epoch in tqdm(range(cfg.epochs), desc="epochs", disable=not cfg.progress, leave=False):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for b in range(steps):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < 2 and n > 1:  # BatchNorm cannot train on one row
                continue
            xb, yb = Xt[idx].to(device, non_blocking=True), Yt[idx].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(xb), yb)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
        if on_epoch_end is not None:
            module.eval()
            on_epoch_end(epoch + 1, module)
            module.to(device).train()
    module.eval()
    return history


@torch.no_grad()
def predict_logits(module: nn.Module, X: np.ndarray, device: str = "cpu", batch_size: int = 8192) -> np.ndarray:
    """Logits in eval mode (dropout off, BatchNorm running statistics), in batches."""
    dev = resolve_device(device)
    module.to(dev).eval()
    out = []
    for i in range(0, len(X), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(X[i:i + batch_size], dtype=np.float32)).to(dev)
        out.append(module(xb).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """float32 logistic function (one vectorised pass; no overflow warnings for large |z|)."""
    return torch.sigmoid(torch.as_tensor(np.asarray(z, dtype=np.float32))).numpy()
