"""The named datasets read from torchvision's layout under data.root."""

from bench.data.named.celeba import CELEBA
from bench.data.named.cifar10 import CIFAR10
from bench.data.named.fetch import NamedSet
from bench.data.named.idx_sets import IDX_SETS
from bench.data.named.omniglot import OMNIGLOT
from bench.data.named.omniglot_burda import OMNIGLOT_BURDA
from bench.data.named.svhn import SVHN

NAMED: dict[str, NamedSet] = IDX_SETS | {
    s.name: s for s in (CIFAR10, SVHN, CELEBA, OMNIGLOT, OMNIGLOT_BURDA)
}
