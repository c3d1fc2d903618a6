"""Training targets and loss for the detector: task-aligned assignment (TOOD, as YOLOv8 uses).

For every ground-truth box, the points whose centre lies inside it are candidates; each is
scored by how well it already does the task, `score(class)^alpha x IoU(predicted, truth)^beta`,
and the `top_k` best become its positives (a point claimed by two boxes goes to the one it
overlaps most). The class target of a positive is that alignment, rescaled so a box's best point
aims at its best IoU: the class score learns to rank boxes by localisation quality, which is
what mAP over IoU 0.5-0.95 rewards. Box loss is GIoU, weighted by the same targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from edgewise.studio.detect.model import decode


@dataclass(frozen=True)
class LossWeights:
    classes: float = 1.0
    box: float = 5.0
    top_k: int = 10
    alpha: float = 1.0
    beta: float = 6.0


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a (..., M, 4) with b (..., N, 4) -> (..., M, N)."""
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter + 1e-9)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matched boxes (K, 4) and (K, 4) -> (K,)."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a + area_b - inter + 1e-9
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(-1) + 1e-9
    return inter / union - (hull - union) / hull


@torch.no_grad()
def assign(boxes: torch.Tensor, scores: torch.Tensor, centres: torch.Tensor, truth_boxes: torch.Tensor,
           truth_classes: torch.Tensor, truth_valid: torch.Tensor, weights: LossWeights
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted (B, N, 4) boxes and (B, N, C) probabilities, truths padded to (B, M, ...) ->
    (target boxes (B, N, 4), target class scores (B, N, C), positive mask (B, N))."""
    batch, count, classes = scores.shape
    if truth_boxes.shape[1] == 0:
        return boxes.new_zeros(batch, count, 4), scores.new_zeros(batch, count, classes), \
            torch.zeros(batch, count, dtype=torch.bool, device=boxes.device)
    inside = ((centres[None, None] > truth_boxes[:, :, None, :2]) &
              (centres[None, None] < truth_boxes[:, :, None, 2:])).all(-1) & truth_valid[:, :, None]  # (B, M, N)
    overlaps = pairwise_iou(truth_boxes, boxes) * inside  # (B, M, N)
    class_scores = scores.gather(2, truth_classes.clamp(min=0)[:, None, :].expand(-1, count, -1)).transpose(1, 2)
    alignment = class_scores.pow(weights.alpha) * overlaps.pow(weights.beta) * inside
    top = alignment.topk(min(weights.top_k, count), dim=-1).indices
    positive = torch.zeros_like(alignment, dtype=torch.bool).scatter_(-1, top, True) & inside & (alignment > 0)
    # A point claimed by several boxes keeps the one it overlaps most.
    claimed = positive.sum(1) > 1
    best_truth = overlaps.argmax(1)
    sole = F.one_hot(best_truth, truth_boxes.shape[1]).transpose(1, 2).bool()
    positive = torch.where(claimed[:, None, :], sole & positive.any(1, keepdim=True), positive)
    is_positive = positive.any(1)
    owner = positive.float().argmax(1)  # (B, N)
    target_boxes = truth_boxes.gather(1, owner[..., None].expand(-1, -1, 4))
    aligned = alignment * positive
    scale = overlaps.mul(positive).amax(-1, keepdim=True) / aligned.amax(-1, keepdim=True).clamp(min=1e-9)
    quality = (aligned * scale).amax(1)  # (B, N)
    owner_class = truth_classes.clamp(min=0).gather(1, owner)
    target_scores = F.one_hot(owner_class, classes).float() * (quality * is_positive)[..., None]
    return target_boxes, target_scores, is_positive


def detection_loss(raw: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor, truth_boxes: torch.Tensor,
                   truth_classes: torch.Tensor, truth_valid: torch.Tensor,
                   weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """(total loss, its parts) for a batch: raw head (B, N, 4 + C), truths padded to M per image."""
    boxes, scores = decode(raw, centres, strides)
    target_boxes, target_scores, positive = assign(boxes.detach(), scores.detach(), centres, truth_boxes,
                                                   truth_classes, truth_valid, weights)
    normaliser = target_scores.sum().clamp(min=1.0)
    class_loss = F.binary_cross_entropy_with_logits(raw[..., 4:], target_scores, reduction="sum") / normaliser
    if positive.any():
        box_weight = target_scores.sum(-1)[positive]
        box_loss = ((1 - giou(boxes[positive], target_boxes[positive])) * box_weight).sum() / normaliser
    else:
        box_loss = raw.sum() * 0
    total = weights.classes * class_loss + weights.box * box_loss
    return total, {"class_loss": float(class_loss.detach()), "box_loss": float(box_loss.detach()),
                   "positives": int(positive.sum())}
