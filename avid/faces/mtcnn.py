"""The MTCNN networks and box helpers, with the weights that ship in the facenet-pytorch wheel.

The three nets are facenet-pytorch's P-, R- and O-net, layer for layer, so its state dicts load into them. They are
defined here, and the weights read from the package's data folder, because importing facenet_pytorch imports
torchvision, and through it torch._dynamo: about 2 s of every avid start-up, for one non-maximum suppression. The
box helpers follow facenet-pytorch's ``detect_face`` (its +1 pixel box conventions included); the suppression
follows torchvision's ``batched_nms`` (greedy, highest score first, IoU above the threshold suppressed).
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError


class PNet(nn.Module):
    """Proposal net: a fully convolutional 12x12 face/no-face classifier with box regression."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refine net: rescores 24x24 candidate crops and refines their boxes."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))   # the weights' (w, h, c) order
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: final score, box and five landmarks from 48x48 crops."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


@lru_cache(maxsize=2)
def load_nets(device: str = "cpu") -> tuple[PNet, RNet, ONet]:
    """The three nets with facenet-pytorch's bundled weights, in eval mode and channels-last on ``device``,
    loaded once."""
    spec = importlib.util.find_spec("facenet_pytorch")   # located, not imported (see the module docstring)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face detection needs the facenet-pytorch package (pip install facenet-pytorch==2.5.3)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    nets = []
    for net, name in ((PNet(), "pnet.pt"), (RNet(), "rnet.pt"), (ONet(), "onet.pt")):
        try:
            net.load_state_dict(torch.load(data / name, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"MTCNN weights unreadable ({exc.__class__.__name__}); reinstall facenet-pytorch",
                             data / name) from None
        nets.append(net.eval().to(device=device, memory_format=torch.channels_last))
    return tuple(nets)


# ------------------------------------------------------------------------------------------ box helpers
def generate_boxes(regression: torch.Tensor, probability: torch.Tensor, scale: float,
                   threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P-net output cells scoring at least ``threshold`` -> boxes (k, 9: x1, y1, x2, y2, score, 4 regression
    offsets) in image pixels, and the image index of each."""
    stride, cell = 2, 12
    mask = probability >= threshold
    where = mask.nonzero()
    offsets = regression.permute(1, 0, 2, 3)[:, mask].permute(1, 0)
    corner = where[:, 1:].to(regression.dtype).flip(1)      # (x, y) of each cell
    top_left = ((stride * corner + 1) / scale).floor()
    bottom_right = ((stride * corner + cell) / scale).floor()
    return torch.cat([top_left, bottom_right, probability[mask].unsqueeze(1), offsets], dim=1), where[:, 0]


def apply_regression(boxes: torch.Tensor, regression: torch.Tensor) -> torch.Tensor:
    """Move each box's corners by its regression offsets (fractions of its width and height)."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    boxes = boxes.clone()
    boxes[:, :4] = boxes[:, :4] + regression[:, :4] * torch.stack([width, height, width, height], dim=1)
    return boxes


def to_square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box grown to a square on its longer side, about the same centre."""
    height = boxes[:, 3] - boxes[:, 1]
    width = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(width, height)
    boxes = boxes.clone()
    boxes[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side.unsqueeze(1)
    return boxes


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                overlap: str = "union") -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression within each group, best score first.

    ``overlap``: "union" suppresses a box whose intersection over union with a kept one exceeds ``threshold``
    (torchvision's areas, without the +1); "min" measures the intersection over the smaller box, with +1 pixel
    areas, as facenet-pytorch's last stage does.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    # Shifting each group by more than the largest coordinate keeps groups from overlapping one another.
    shifted = (boxes + groups.to(boxes)[:, None] * (boxes.max() + 1)).double().numpy()
    x1, y1, x2, y2 = shifted.T
    plus = 1.0 if overlap == "min" else 0.0
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(-scores.numpy(), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + plus)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + plus)
        inter = width * height
        if overlap == "min":
            ratio = inter / np.minimum(area[best], area[rest])
        else:
            ratio = inter / (area[best] + area[rest] - inter)
        order = rest[ratio <= threshold]
    return torch.as_tensor(np.array(keep, dtype=np.int64))
