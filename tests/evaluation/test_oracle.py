"""Oracle: every record of the release-format fixture, answered with its own ground truth, scores 1.0.

- Each evaluation record scores 1.0 on its task's official metric (accuracy for multiple choice, numerical and
  math; MRA; 1 - WER; ROUGE; mIoU and R@0.5 for temporal grounding; Acc@0.5 and mIoU for spatial grounding;
  m_tIoU and m_vIoU for spatio-temporal grounding; AO for tracking; gIoU / cIoU for image segmentation; J, F,
  J&F for video segmentation).
- Segmentation's official metric needs masks from a promptable segmenter: the scoring path is run with a
  decoder that returns the ground-truth masks (``segmentation_output`` at the record's ``resolution``), and the
  test checks that it was prompted with the answer's box, points and key frame, on media brought to that
  resolution.
- Each RL record scores accuracy 1.0 with the reward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onethinker.contract import MediaRoot, parse_records, read_records
from onethinker.contract.answers import format_response
from onethinker.contract.schema import parse_structured
from onethinker.evaluation.core import score_benchmark
from onethinker.evaluation.masks import prediction_masks
from onethinker.rewards import compute_score

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "onethinker_release"
EVAL_FILES = ["eval_mathvista.json", "eval_videomme.json", "eval_seg_refcoco.json", "eval_seg_mevis.json"]
OFFICIAL = {
    "multiple_choice": ("accuracy",),
    "numerical": ("accuracy",),
    "math": ("accuracy",),
    "regression": ("MRA",),
    "ocr": ("1-WER",),
    "open_ended": ("ROUGE",),
    "temporal_grounding": ("mIoU", "R@0.5"),
    "spatial_grounding": ("Acc@0.5", "mIoU"),
    "spatial_temporal_grounding": ("m_tIoU", "m_vIoU"),
    "tracking": ("AO",),
    "segmentation_image": ("gIoU", "cIoU"),
    "segmentation_video": ("J", "F", "J&F"),
}


class GroundTruthDecoder:
    """A mask decoder that answers with the record's ground-truth masks, and records how it was prompted."""

    def __init__(self, record) -> None:
        self.truth = record.segmentation
        self.calls: list[tuple] = []

    def image_mask(self, image, box, positive, negative):
        self.calls.append((image.shape[:2], tuple(box), tuple(positive), tuple(negative)))
        ((_, mask),) = self.truth.masks()
        return mask

    def video_masks(self, frames, key_index, box, positive, negative):
        self.calls.append((frames.shape[:3], key_index, tuple(box), tuple(positive), tuple(negative)))
        out = [np.zeros((self.truth.height, self.truth.width), bool) for _ in self.truth.frames]
        for i, mask in self.truth.masks():
            out[i] = mask
        return out


def _oracle_response(record) -> str:
    return format_response("The answer is known.", record.answer)


@pytest.fixture(scope="module")
def scored() -> dict:
    root = MediaRoot("eval", FIX / "eval")
    records = [
        r
        for name in EVAL_FILES
        for r in parse_records(read_records(FIX / "eval" / name), FIX / "eval" / name)
    ]
    decoders: dict[str, GroundTruthDecoder] = {}

    def masks(record, answer):
        decoders[record.uid] = GroundTruthDecoder(record)
        return prediction_masks(record, answer, root, decoders[record.uid])

    summary, rows = score_benchmark(records, [_oracle_response(r) for r in records], masks)
    return {"records": records, "summary": summary, "rows": rows, "decoders": decoders}


def test_every_task_of_the_fixture_is_scored(scored) -> None:
    assert set(scored["summary"]["tasks"]) == set(OFFICIAL)


@pytest.mark.parametrize("slug", sorted(OFFICIAL))
def test_ground_truth_scores_one_on_the_official_metric(scored, slug: str) -> None:
    task = scored["summary"]["tasks"][slug]
    for metric in OFFICIAL[slug]:
        assert task[metric] == pytest.approx(1.0), (slug, metric, task)
    assert task["format_rate"] == 1.0


def test_segmentation_decoder_was_prompted_with_the_answer(scored) -> None:
    seg = [r for r in scored["records"] if r.problem_type == "segmentation"]
    assert len(seg) == 3
    for record in seg:
        (call,) = scored["decoders"][record.uid].calls
        answer = parse_structured(record.answer)
        truth = record.segmentation
        if record.data_type == "image":
            shape, box, pos, neg = call
            assert shape == (truth.height, truth.width)  # the image brought to the record's resolution
        else:
            shape, key, box, pos, neg = call
            assert shape == (len(truth.frames), truth.height, truth.width)  # frame i at i / fps
            assert key == round(answer.seconds * truth.fps)  # the key frame the answer names
        assert (box, pos, neg) == (answer.box, answer.positive, answer.negative)


def test_every_rl_record_scores_accuracy_one() -> None:
    path = FIX / "train" / "onethinker_rl_train.json"
    records = parse_records(read_records(path), path)
    assert {r.slug for r in records} == set(OFFICIAL)  # all 16 task/modality pairs are in the RL file
    items = [r.reward_item(_oracle_response(r)) for r in records]  # the fields the release's reward gets
    scores = compute_score(items)
    assert [s["accuracy"] for s in scores] == [1.0] * len(records), [
        (r.uid, s) for r, s in zip(records, scores, strict=True) if s["accuracy"] != 1.0
    ]
    assert all(s["format"] == 1.0 for s in scores)
