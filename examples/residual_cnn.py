"""A user's own residual CNN in plain PyTorch (the UPDP tutorial in docs/updp-any-model.md)."""

import torch.nn as nn


class Block(nn.Module):
    """Depthwise 3x3 -> BN -> 1x1 expand -> ReLU -> 1x1 project, plus the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.bn = nn.BatchNorm2d(c)
        self.pw1, self.act, self.pw2 = nn.Conv2d(c, 4 * c, 1), nn.ReLU(), nn.Conv2d(4 * c, c, 1)

    def forward(self, x):
        return x + self.pw2(self.act(self.pw1(self.bn(self.dw(x)))))


class ResidualCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths=(16, 32, 64)) -> None:
        super().__init__()
        layers, c = [nn.Conv2d(in_chans, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]), nn.ReLU()], widths[0]
        for i, w in enumerate(widths):
            if i:
                layers += [nn.Conv2d(c, w, 2, stride=2), nn.BatchNorm2d(w)]
            layers += [Block(w), Block(w)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def build(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    return ResidualCNN(num_classes, in_chans)
