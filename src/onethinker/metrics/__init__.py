"""Evaluation metrics with the field's official definitions: pure functions over plain inputs.

Spans are [start, end], boxes [x1, y1, x2, y2], per-frame boxes mappings from frame key to box, masks
COCO RLE dicts or boolean arrays. Batched paths are vectorised with numpy (or pycocotools) and tested
against plain loops.
"""

from onethinker.metrics.geometry import box_iou, box_iou_one, tiou, tiou_one
from onethinker.metrics.grounding import (
    per_frame_tracking_ious,
    spatial_grounding_metrics,
    spatio_temporal_grounding_metrics,
    temporal_grounding_metrics,
    tracking_metrics,
    viou,
)
from onethinker.metrics.masks import (
    boundary_map,
    decode,
    dilate_disk,
    f_per_frame,
    j_per_frame,
    jf_metrics,
    segmentation_metrics,
    to_rle,
)
from onethinker.metrics.qa import accuracy, mra, ocr_score, rouge_scores
from onethinker.metrics.text import (
    edit_distance,
    lcs_length,
    mean_relative_accuracy,
    ocr_accuracy,
    rouge_f,
    rouge_mean,
    word_error_rate,
)

__all__ = [
    "accuracy",
    "boundary_map",
    "box_iou",
    "box_iou_one",
    "decode",
    "dilate_disk",
    "edit_distance",
    "f_per_frame",
    "j_per_frame",
    "jf_metrics",
    "lcs_length",
    "mean_relative_accuracy",
    "mra",
    "ocr_accuracy",
    "ocr_score",
    "per_frame_tracking_ious",
    "rouge_f",
    "rouge_mean",
    "rouge_scores",
    "segmentation_metrics",
    "spatial_grounding_metrics",
    "spatio_temporal_grounding_metrics",
    "temporal_grounding_metrics",
    "tiou",
    "tiou_one",
    "to_rle",
    "tracking_metrics",
    "viou",
    "word_error_rate",
]
