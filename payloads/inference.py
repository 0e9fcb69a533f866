"""The image-inference task: a small convolutional network really executed on the node.

Why a generated model: the testbed must run offline and never download from a model hub, and
what an offloading experiment needs from inference is a real, fixed amount of tensor work per
image whose time reflects the node's CPU (and quota), not a meaningful label.  The network is
built from a fixed seed, so every node - emulated or a physical board with the same torch -
computes bit-identical outputs for the same input, which is how a result proves it was really
computed there.

Imported lazily by the agent: a board without torch still runs CPU-kernel tasks and answers
inference tasks with a clear "torch is not installed on <node>".
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

MODEL = "tinycnn-v1"
IMAGE_SIZE = 64
CHANNELS = 3
CLASSES = 10
MAX_IMAGES = 64
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS
_SEED = 20261127


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """n deterministic RGB images (uint8, NHWC), for clients that send no pixels."""
    return np.random.default_rng(seed).integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, CHANNELS),
                                                dtype=np.uint8)


def decode_images(body: bytes, n: int) -> np.ndarray:
    """The task body as n HxWxC uint8 images; an empty body means synthetic images."""
    if not body:
        return synthetic_images(n)
    if len(body) != n * IMAGE_BYTES:
        raise ValueError(f"body has {len(body)} bytes, {n} images of {IMAGE_SIZE}x{IMAGE_SIZE}"
                         f"x{CHANNELS} need {n * IMAGE_BYTES}")
    return np.frombuffer(body, dtype=np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


class TinyCnn:
    """Three conv blocks and a linear head (~0.03 GFLOP per image), one CPU thread so that a
    node's CPU quota, not torch's thread pool, decides its speed."""

    def __init__(self) -> None:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(_SEED)
        self.torch = torch
        self.net = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(64, CLASSES)).eval()
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)

    def fingerprint(self) -> str:
        """Hash of the weights: equal on two nodes means the same model."""
        h = hashlib.sha256()
        for p in self.net.parameters():
            h.update(p.detach().numpy().tobytes())
        return h.hexdigest()[:16]

    def __call__(self, images: np.ndarray) -> dict[str, Any]:
        torch = self.torch
        x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            logits = self.net(x)
        return {"labels": logits.argmax(dim=1).tolist(),
                "logits_sha256": hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16]}
