"""What is trained, and the training state as bytes.

The data set is scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes; it
ships inside the package, nothing is downloaded): a fixed split, 1,437 images to train on and
360 to measure accuracy.  The model is a small MLP (64 -> hidden... -> 10).

Every member of the ring holds the same `State` at a step boundary: the parameters, SGD's
momentum buffers and the step counter.  `State.blob()` is its one byte form - what replication
sends, what a checkpoint stores and what `digest()` hashes - so "the joiner has the cluster's
state" is a hash comparison, not a belief.  `ballast_mb` pads the state with frozen bytes so a
benchmark can replicate 1, 10 or 100 MB of state through the same code.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

HEADER = struct.Struct("<QI")  # step, ballast length in 4-byte words


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), features scaled to [0, 1]; the split is fixed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    n_test = 360
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def batch_indices(seed: int, step: int, rank: int, members: int, batch: int,
                  n_train: int) -> np.ndarray:
    """The training examples of one member at one step: every step draws one global batch of
    `batch * members` examples (a permutation per epoch, the same on every node), and member
    `rank` takes its slice - so the cluster's gradient is the global batch's, whoever is in."""
    per_epoch = max(1, n_train // batch)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng((seed, epoch)).permutation(n_train)
    start = (k * batch * members + rank * batch) % n_train
    idx = np.arange(start, start + batch) % n_train
    return perm[idx]


@dataclass
class Trainer:
    """The model, its optimiser and the step it is at."""

    hidden: tuple[int, ...]
    lr: float
    momentum: float
    seed: int
    ballast_words: int = 0

    def __post_init__(self) -> None:
        import torch

        torch.manual_seed(self.seed)
        layers: list[torch.nn.Module] = []
        width = 64
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 10))
        self.net = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=self.momentum)
        self.params = list(self.net.parameters())
        self.sizes = [p.numel() for p in self.params]
        self.step = 0
        rng = np.random.default_rng(self.seed + 1)
        self.ballast = rng.standard_normal(self.ballast_words).astype(np.float32)

    @property
    def n_params(self) -> int:
        return sum(self.sizes)

    def gradient(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This member's gradient on examples `idx` (flat float32) and its loss."""
        import torch

        x_train, y_train, _, _ = digits()
        self.net.train()
        self.opt.zero_grad(set_to_none=False)
        out = self.net(torch.from_numpy(x_train[idx]))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y_train[idx]))
        loss.backward()
        flat = np.concatenate([p.grad.detach().numpy().ravel() for p in self.params])
        return flat.astype(np.float32, copy=False), float(loss.item())

    def apply(self, mean_grad: np.ndarray) -> None:
        """One SGD step with the cluster's mean gradient: the same bytes on every member give
        the same parameters on every member."""
        import torch

        off = 0
        for p, n in zip(self.params, self.sizes, strict=True):
            p.grad = torch.from_numpy(mean_grad[off:off + n].reshape(p.shape).copy())
            off += n
        self.opt.step()
        self.step += 1

    def accuracy(self) -> tuple[float, float]:
        """(accuracy, loss) on the held-out 360 images."""
        import torch

        _, _, x_test, y_test = digits()
        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.from_numpy(x_test))
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y_test))
            acc = (out.argmax(1).numpy() == y_test).mean()
        return float(acc), float(loss.item())

    def snapshot(self) -> list[np.ndarray]:
        """Parameters and momentum, copied: what undoing one step restores (the ballast is
        frozen, so it is not copied)."""
        return [t.copy() for t in self._tensors()]

    def restore(self, snap: list[np.ndarray]) -> None:
        import torch

        k = len(self.params)
        with torch.no_grad():
            for p, t in zip(self.params, snap[:k], strict=True):
                p.copy_(torch.from_numpy(t.reshape(p.shape)))
            for p, t in zip(self.params, snap[k:], strict=True):
                self.opt.state[p]["momentum_buffer"] = torch.from_numpy(t.reshape(p.shape).copy())
        self.step -= 1

    # ---- the state as bytes -------------------------------------------------------------------
    def _tensors(self) -> list[np.ndarray]:
        out = [p.detach().numpy().ravel() for p in self.params]
        for p in self.params:
            buf = self.opt.state.get(p, {}).get("momentum_buffer")
            out.append(np.zeros(p.numel(), np.float32) if buf is None
                       else buf.detach().numpy().ravel())
        return out

    @property
    def blob_size(self) -> int:
        return HEADER.size + 4 * (2 * self.n_params + self.ballast_words)

    def blob(self) -> bytes:
        parts = [HEADER.pack(self.step, self.ballast_words)]
        parts += [t.astype(np.float32, copy=False).tobytes() for t in self._tensors()]
        parts.append(self.ballast.tobytes())
        return b"".join(parts)

    def load(self, blob: bytes) -> None:
        """Become the state `blob` (from a neighbour or a checkpoint)."""
        import torch

        step, words = HEADER.unpack_from(blob)
        if words != self.ballast_words:
            raise ValueError(f"state has {words} ballast words, this trainer {self.ballast_words}")
        expect = HEADER.size + 4 * (2 * self.n_params + words)
        if len(blob) != expect:
            raise ValueError(f"state is {len(blob)} bytes, this model's is {expect}")
        flat = np.frombuffer(blob, np.float32, offset=HEADER.size)
        off = 0
        with torch.no_grad():
            for p, n in zip(self.params, self.sizes, strict=True):
                p.copy_(torch.from_numpy(flat[off:off + n].reshape(p.shape).copy()))
                off += n
            for p, n in zip(self.params, self.sizes, strict=True):
                self.opt.state[p]["momentum_buffer"] = torch.from_numpy(
                    flat[off:off + n].reshape(p.shape).copy())
                off += n
        self.ballast = flat[off:off + words].copy()
        self.step = step


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def ballast_words(state_mb: float, n_params: int) -> int:
    """Words of ballast that make the state `state_mb` MB (never negative)."""
    target = int(state_mb * 1e6) // 4
    return max(0, target - 2 * n_params - HEADER.size // 4)


def trainer_for(hidden: tuple[int, ...], lr: float, momentum: float, seed: int,
                state_mb: float = 0.0) -> Trainer:
    """The experiment's trainer, its state padded to `state_mb` MB when asked."""
    t = Trainer(hidden, lr, momentum, seed)
    words = ballast_words(state_mb, t.n_params) if state_mb else 0
    return Trainer(hidden, lr, momentum, seed, words) if words else t
