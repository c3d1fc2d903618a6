"""Knowledge distillation for detectors: a student learns the teacher's dense outputs as well as
the labels (the "output distillation" of LD / YOLO-distillation work).

Per point, the student's class logits are pulled towards the teacher's probabilities (binary
cross-entropy against soft targets) and, where the teacher is confident, its box towards the
teacher's (GIoU). Both are weighted by the teacher's best class score, so the background that
fills most of the map does not drown the objects. Used by the `small` recipe: a pruned model
recovers under its unpruned self as teacher, not under the labels alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from edgewise.studio.detect.loss import detection_loss, giou
from edgewise.studio.detect.model import Detector, decode

CONFIDENT = 0.3  # the teacher's best class score above which its box is a target


def distillation_loss(teacher: Detector, weight: float = 1.0) -> Any:
    """A `fit_detector` loss: labels' loss + `weight` x (class and box distillation)."""
    teacher = teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    def loss_fn(raw: torch.Tensor, inputs: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor,
                boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        supervised, parts = detection_loss(raw, centres, strides, boxes, classes, valid)
        with torch.no_grad():
            teacher_raw = teacher(inputs)
            teacher_boxes, teacher_scores = decode(teacher_raw, centres, strides)
            focus = teacher_scores.amax(-1)  # (B, N)
        normaliser = focus.sum().clamp(min=1.0)
        class_term = (F.binary_cross_entropy_with_logits(raw[..., 4:], teacher_scores, reduction="none").sum(-1)
                      * focus).sum() / normaliser
        student_boxes, _ = decode(raw, centres, strides)
        confident = focus > CONFIDENT
        box_term = ((1 - giou(student_boxes[confident], teacher_boxes[confident])) * focus[confident]).sum() \
            / normaliser if confident.any() else raw.sum() * 0
        total = supervised + weight * (class_term + 5.0 * box_term)
        parts.update(distill_class=float(class_term.detach()), distill_box=float(box_term.detach()))
        return total, parts

    return loss_fn
