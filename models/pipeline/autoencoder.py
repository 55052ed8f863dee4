"""The anomaly model: an autoencoder (a scikit-learn MLP trained to give back
its input through a narrow middle layer) on standardised features of benign
steps. A step's score is its mean squared reconstruction error; the errors per
feature say what looked unusual."""

from dataclasses import dataclass

import numpy as np
from sklearn.neural_network import MLPRegressor



@dataclass
class Autoencoder:
    mean: np.ndarray
    std: np.ndarray
    mlp: MLPRegressor

    def errors(self, x: np.ndarray) -> np.ndarray:
        """Per-feature squared errors, in float64, as the ONNX graph computes them."""
        z = (x.astype(np.float64) - self.mean) / self.std
        return (self.mlp.predict(z) - z) ** 2

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.errors(x).mean(axis=1)


def train(x: np.ndarray, hidden: tuple[int, ...], seed: int, std_floor: float) -> Autoencoder:
    """`std_floor`: standard deviations below it are raised to it; a feature
    that never moves in benign traffic (fragments, say) would otherwise make
    any other value an infinite error."""
    mean = x.mean(axis=0).astype(np.float64)
    std = np.maximum(x.std(axis=0).astype(np.float64), std_floor)
    z = (x - mean) / std
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="tanh",
        solver="adam",
        alpha=1e-4,
        learning_rate_init=1e-3,
        max_iter=4000,
        tol=1e-6,
        n_iter_no_change=50,
        random_state=seed,
    )
    mlp.fit(z, z)
    return Autoencoder(mean, std, mlp)


def threshold(validation_scores: np.ndarray, quantile: float) -> float:
    """The score above which a step is flagged: a high quantile of benign
    validation scores (no attack data is used)."""
    return float(np.quantile(validation_scores, quantile))
