"""The reference: the training loop of pytorch/examples' vae/main.py, given the harness's data.

A torchvision dataset through ToTensor and a DataLoader (shuffle, default workers), two separate
mu/logvar heads, a sigmoid decoder with summed binary_cross_entropy, default Adam, a sample grid
saved every epoch.
"""

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.utils import save_image

from bench.data.dataset import Dataset
from bench.data.named.idx_sets import TORCHVISION_CLASSES
from bench.perf.machine import synchronize


class ReferenceVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def reference_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_loop(
    loader: DataLoader, epochs: int, seed: int, out: Path, device: torch.device
) -> tuple[list[float], list[float]]:
    """Mean training loss (nats per example) and seconds of each epoch."""
    torch.manual_seed(seed)
    torch.set_flush_denormal(False)  # as the tutorial runs; the harness turns it on for itself
    model = ReferenceVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, seconds = [], []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        total = 0.0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = reference_loss(recon, data, mu, logvar)
            loss.backward()
            total += loss.item()
            optimizer.step()
        losses.append(total / len(loader.dataset))
        with torch.no_grad():
            sample = model.decode(torch.randn(64, 20).to(device)).cpu()
            save_image(sample.view(64, 1, 28, 28), out / f"sample_{epoch}.png")
        synchronize()
        seconds.append(time.perf_counter() - started)
    return losses, seconds


def reference_loader(cfg, data: Dataset, device: torch.device) -> DataLoader:
    """The tutorial's pipeline over exactly the harness's training images."""
    root = Path(str(cfg.data.root)).expanduser()
    binarized = transforms.Compose([transforms.ToTensor(), torch.bernoulli])
    full = getattr(datasets, TORCHVISION_CLASSES[cfg.data.name])(
        root, train=True, transform=binarized
    )
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(int(cfg.data.seed)))
    train_ids = perm[int(cfg.data.val_size) :].tolist()
    on_gpu = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return DataLoader(Subset(full, train_ids), batch_size=128, shuffle=True, **on_gpu)
