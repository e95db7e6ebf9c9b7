"""Darknet-19, the YOLOv2 backbone, built from its published layer table (Redmon & Farhadi 2016, Table 6).

Taught in 05_static (the seminar's own quantization project used this network). 19 conv layers:
3×3 and 1×1 conv–BatchNorm–LeakyReLU(0.1) stacks with five 2×2 max-pools, then a 1×1 conv to the
class count (bias, no BN, linear activation) and global average pooling. The paper's final softmax
is left out: the model returns logits, like torchvision's classifiers.
"""

from __future__ import annotations

from torch import nn

from helpers._validate import check_int

__all__ = ["DARKNET19_LAYERS", "Darknet19", "darknet19_fuse_groups"]

#: The layer table: ``(filters, kernel)`` for a conv-BN-LeakyReLU, ``"M"`` for a 2×2/2 max-pool.
DARKNET19_LAYERS: list = [
    (32, 3), "M",
    (64, 3), "M",
    (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M",
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
]  # fmt: skip


def _conv_bn_act(c_in: int, c_out: int, k: int, leaky: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1) if leaky else nn.ReLU(),
    )


class Darknet19(nn.Module):
    """Darknet-19 classifier: ``features`` (the table above) -> 1×1 conv to ``num_classes`` -> global average pool.

    ``features[i]`` is ``Sequential(Conv2d, BatchNorm2d, LeakyReLU(0.1))`` or a ``MaxPool2d``; the
    network has 18 conv layers in ``features`` plus the classifier conv = 19. ``leaky=False`` swaps
    every LeakyReLU for a ReLU (not the published network: a control for measuring what the
    unfusable LeakyReLU costs in eager int8). Taught in 05_static.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, leaky: bool = True) -> None:
        super().__init__()
        if not isinstance(leaky, bool):
            raise TypeError(f"leaky must be True or False, got {leaky!r}")
        self.leaky = leaky
        num_classes = check_int(num_classes, "num_classes", lo=1)
        in_channels = check_int(in_channels, "in_channels", lo=1)
        layers: list[nn.Module] = []
        c = in_channels
        for spec in DARKNET19_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                filters, k = spec
                layers.append(_conv_bn_act(c, filters, k, leaky))
                c = filters
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.flatten(self.pool(self.classifier(self.features(x))))


def darknet19_fuse_groups(model: Darknet19, prefix: str = "") -> list[list[str]]:
    """Eager-mode fusion groups ``[features.i.0, features.i.1]`` (conv + BN) of a ``Darknet19``.

    LeakyReLU is not in the list: torch.ao's eager ``fuse_modules`` has no conv-BN-LeakyReLU
    pattern, so the activation stays a separate (quantized) op. With ``leaky=False`` the ReLU is
    added (``features.i.2``): conv-BN-ReLU fuses into one ``ConvReLU2d``. ``prefix`` is prepended to each
    name (e.g. ``"module."`` inside a ``QuantWrapper``). Taught in 05_static.
    """
    if not isinstance(model, Darknet19):
        raise TypeError(f"model must be a Darknet19, got {type(model).__name__}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    tail = [] if model.leaky else ["2"]
    return [
        [f"{prefix}features.{i}.{j}" for j in ["0", "1", *tail]]
        for i, block in enumerate(model.features)
        if isinstance(block, nn.Sequential)
    ]
