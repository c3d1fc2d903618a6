"""Fine-tuning and knowledge distillation, shared by the steps that change weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from tqdm import tqdm


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
    temperature: float, alpha: float,
) -> torch.Tensor:
    """Hinton KD: alpha * T^2 * KL(soft teacher || soft student) + (1 - alpha) * CE(labels)."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    ) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def fine_tune(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    epochs: int,
    lr: float,
    teacher: torch.nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    desc: str = "fine-tune",
) -> torch.nn.Module:
    """Train `model` for `epochs`, distilling from `teacher` when one is given (cosine LR)."""
    if epochs <= 0:
        return model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    total_steps = max(1, epochs * _length(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.15)
    if teacher is not None:
        teacher.eval()
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            logits = model(images)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = distillation_loss(logits, teacher_logits, labels, temperature, alpha)
            else:
                loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            if scheduler.last_epoch + 1 < total_steps:
                scheduler.step()
    return model.eval()


def _length(loader: Iterable) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 100
