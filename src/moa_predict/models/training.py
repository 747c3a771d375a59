"""The one torch training loop shared by every network in moa-predict, and its settings.

Networks output logits; the loss is binary cross-entropy on logits (numerically the
same as the paper's sigmoid + BCE, without its overflow), with optional label
smoothing. ``train_network`` is the only place a network is seeded: its weight
initialisation, dropout masks and data order all follow from one seed, whatever ran
before in the process, and the caller's random state is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn
from tqdm.auto import tqdm


@dataclass
class TrainConfig(BaseEstimator):
    """How a network is trained: one hyper-parameter of ``NetworkModel`` (``train``).

    A dataclass that is also a scikit-learn estimator, so that ``clone``, ``get_params`` and
    ``set_params(train__epochs=5)`` see every field.
    """

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
    progress: bool = False


def resolve_device(name: str) -> torch.device:
    """The torch device, with a clear message when CUDA was asked for but is absent."""
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


@contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA for the duration (GPU results then differ from the CPU's by float rounding only);
    the process's flags are restored afterwards."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global generators seeded for the duration, then restored (a fit leaves no trace on them)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def one_cycle(opt: torch.optim.Optimizer, max_lr: float, total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """torch's OneCycle (10 % warm-up from max_lr/1000, cosine anneal), valid for any number of steps.

    torch divides by the warm-up length ``0.1 * total_steps - 1``, which is 0 for exactly 10 steps
    (ZeroDivisionError). A warm-up that short only holds step 0, at the initial lr whatever its length,
    so it is lengthened by a hair there: every other step count gets torch's schedule unchanged.
    """
    pct_start = 0.1
    if float(pct_start * total_steps) - 1 == 0:
        pct_start += 1e-9
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(total_steps, 1),
                                               pct_start=pct_start, div_factor=1e3)


def train_network(build: Callable[[], nn.Module], X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, *,
                  seed: int, device: str = "cpu", softmax: bool = False,
                  on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> tuple[nn.Module, list[float]]:
    """Build a network with ``build()`` and train it (logits out) on X → Y; returns it (on the CPU, in eval
    mode) and the mean training loss per epoch.

    `seed` seeds the weight initialisation, then (re-seeded, so they do not depend on how many numbers the
    initialisation drew) the dropout masks and the data order. `on_epoch_end(epoch, module)`, if given, is
    called after each epoch (1-based) with the module in eval mode (e.g. to snapshot validation predictions).
    With `softmax` (single-label data: one MoA per profile) the loss is the cross-entropy of a softmax over the
    outputs instead of one binary cross-entropy per output.
    """
    dev = resolve_device(device)
    with seeded(seed, dev), exact_float32(dev):
        module = build()
        torch.manual_seed(seed)
        history = _fit(module, X, Y, cfg, dev, torch.Generator().manual_seed(seed), on_epoch_end, softmax)
    return module.cpu().eval(), history


def _fit(module: nn.Module, X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, device: torch.device,
         gen: torch.Generator, on_epoch_end: Callable[[int, nn.Module], None] | None,
         softmax: bool = False) -> list[float]:
    module.to(device).train()
    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
    Yt = torch.as_tensor(np.ascontiguousarray(Y, dtype=np.float32))
    if cfg.label_smoothing and not softmax:
        Yt = Yt * (1.0 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    n = len(Xt)
    steps = math.ceil(n / cfg.batch_size)
    sched = one_cycle(opt, cfg.max_lr, cfg.epochs * steps) if cfg.schedule == "onecycle" else None
    loss_fn = (nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing) if softmax  # targets: one-hot rows
               else nn.BCEWithLogitsLoss())
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
    return history


@torch.no_grad()
def predict_logits(module: nn.Module, X: np.ndarray, device: str = "cpu", batch_size: int = 8192) -> np.ndarray:
    """Logits in eval mode (dropout off, BatchNorm running statistics), in batches; the module is left on
    the CPU."""
    dev = resolve_device(device)
    out = []
    with exact_float32(dev):
        module.to(dev).eval()
        for i in range(0, len(X), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(X[i:i + batch_size], dtype=np.float32)).to(dev)
            out.append(module(xb).float().cpu().numpy())
    if dev.type != "cpu":
        module.cpu()
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def softmax(z: np.ndarray) -> np.ndarray:
    """float32 softmax over each row (single-label data)."""
    return torch.softmax(torch.as_tensor(np.asarray(z, dtype=np.float32)), dim=1).numpy()


def sigmoid(z: np.ndarray) -> np.ndarray:
    """float32 logistic function (one vectorised pass; no overflow warnings for large |z|)."""
    return torch.sigmoid(torch.as_tensor(np.asarray(z, dtype=np.float32))).numpy()
