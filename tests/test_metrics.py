"""ACC / IoU / mIoU against hand-computed cases, in both conventions."""

import pytest
import torch

from elgan.metrics import ScoreAccumulator, segmentation_scores


def test_hand_case_dataset_and_per_image():
    # image 1: 4 pixels, truth fg = {0,1}, pred fg = {1,2} -> tp 1 fp 1 fn 1 tn 1
    # image 2: truth fg = {0..3}, pred fg = {0..3} -> tp 4
    truth = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).view(2, 1, 2, 2)
    pred = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]]).view(2, 1, 2, 2).float()
    d = segmentation_scores(pred, truth)
    assert d.acc == pytest.approx(6 / 8)
    assert d.iou == pytest.approx(5 / 7)  # tp 5, fp 1, fn 1
    assert d.miou == pytest.approx((5 / 7 + 1 / 3) / 2)  # bg: tn 1, fp 1, fn 1
    p = segmentation_scores(pred, truth, convention="per_image")
    assert p.acc == pytest.approx((0.5 + 1) / 2)
    assert p.iou == pytest.approx((1 / 3 + 1) / 2)
    # image 2 has no background in truth nor prediction: its bg IoU is 1 by convention
    assert p.miou == pytest.approx(((1 / 3 + 1 / 3) / 2 + 1) / 2)
    assert d.n == p.n == 2


def test_threshold_and_accumulator():
    truth = torch.zeros(3, 1, 4, 4)
    truth[:, :, :2] = 1
    prob = truth * 0.7 + 0.2  # 0.9 on fg, 0.2 on bg
    assert segmentation_scores(prob, truth).iou == 1.0
    acc = ScoreAccumulator()
    acc.update(prob[:2], truth[:2])
    acc.update(prob[2:], truth[2:])
    assert acc.result().n == 3 and acc.result().acc == 1.0
    assert torch.equal(acc.per_image_iou(), torch.ones(3, dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        segmentation_scores(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="convention"):
        segmentation_scores(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), convention="x")
