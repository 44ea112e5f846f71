"""The families of known density, by the `data=` name that draws from them."""

from bench.data.synthetic.linear import LinearGaussian
from bench.data.synthetic.mixture import BernoulliMixture

Density = BernoulliMixture | LinearGaussian
FAMILIES: dict[str, type[Density]] = {f.name: f for f in (BernoulliMixture, LinearGaussian)}
