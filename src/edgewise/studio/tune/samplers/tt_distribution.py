"""A probability distribution over a discrete grid, stored in tensor-train (TT) format.

The grid has d axes with n_1..n_d levels. The distribution is a "Born machine":

    p(x) = T(x)^2 / Z,   T(x) = G_1[:, x_1, :] @ G_2[:, x_2, :] @ ... @ G_d[:, x_d, :]

with cores G_k of shape (r_{k-1}, n_k, r_k), r_0 = r_d = 1. Squaring keeps p non-negative for
any core values, so cores can be moved freely by gradient ascent. Z, the marginals used for exact
sequential sampling, and the gradient of the log-likelihood all cost O(d n r^4) through
"environment" contractions of G_k (x) G_k, never touching the n^d grid.
"""

from __future__ import annotations

import numpy as np


class TTDistribution:
    """TT-format Born-machine distribution with exact sampling and log-likelihood gradients."""

    def __init__(self, cores: list[np.ndarray]) -> None:
        self.cores = cores

    @classmethod
    def near_uniform(cls, levels: list[int], rank: int, rng: np.random.Generator, noise: float = 0.1) -> TTDistribution:
        """Cores close to a constant tensor (so p starts near uniform) with noise that breaks symmetry."""
        ranks = [1] + [rank] * (len(levels) - 1) + [1]
        cores = []
        for k, n in enumerate(levels):
            shape = (ranks[k], n, ranks[k + 1])
            core = np.ones(shape) / np.sqrt(ranks[k] * ranks[k + 1]) + noise * rng.standard_normal(shape)
            cores.append(core)
        return cls(cores)

    @property
    def levels(self) -> list[int]:
        return [core.shape[1] for core in self.cores]

    def _transfer(self, k: int) -> np.ndarray:
        """sum_i G_k[:, i, :] (x) G_k[:, i, :] as an (r_{k-1}, r_{k-1}, r_k, r_k) array."""
        core = self.cores[k]
        return np.einsum("aib,cid->acbd", core, core)

    def _environments(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Left (r_{k-1} x r_{k-1}) and right (r_k x r_k) environments of each core, normalised.

        Each environment is divided by its largest entry; the scale cancels in every ratio we use.
        """
        d = len(self.cores)
        transfers = [self._transfer(k) for k in range(d)]
        left = [np.ones((1, 1))]
        for k in range(d - 1):
            env = np.einsum("ac,acbd->bd", left[-1], transfers[k])
            left.append(env / max(np.abs(env).max(), 1e-300))
        right = [np.ones((1, 1))]
        for k in range(d - 1, 0, -1):
            env = np.einsum("acbd,bd->ac", transfers[k], right[0])
            right.insert(0, env / max(np.abs(env).max(), 1e-300))
        return left, right

    def sample(self, rng: np.random.Generator, count: int = 1) -> np.ndarray:
        """Exact samples by sequential conditionals p(x_k | x_<k); shape (count, d)."""
        _, right = self._environments()
        d = len(self.cores)
        samples = np.empty((count, d), dtype=np.int64)
        for s in range(count):
            prefix = np.ones(1)
            for k in range(d):
                candidates = np.einsum("a,aib->ib", prefix, self.cores[k])  # (n_k, r_k)
                weights = np.einsum("ib,bd,id->i", candidates, right[k], candidates)
                weights = np.clip(weights, 0.0, None)
                total = weights.sum()
                probs = weights / total if total > 0 and np.isfinite(total) else np.full(len(weights), 1 / len(weights))
                choice = int(rng.choice(len(probs), p=probs))
                samples[s, k] = choice
                prefix = candidates[choice]
                prefix = prefix / max(np.linalg.norm(prefix), 1e-300)
        return samples

    def conditional(self, point: np.ndarray, axis: int) -> np.ndarray:
        """p(x_axis = i | all other coordinates as in `point`), for every level i."""
        left = np.ones(1)
        for k in range(axis):
            left = left @ self.cores[k][:, point[k], :]
            left = left / max(np.linalg.norm(left), 1e-300)
        right = np.ones(1)
        for k in range(len(self.cores) - 1, axis, -1):
            right = self.cores[k][:, point[k], :] @ right
            right = right / max(np.linalg.norm(right), 1e-300)
        weights = np.einsum("a,aib,b->i", left, self.cores[axis], right) ** 2
        total = weights.sum()
        return weights / total if total > 0 and np.isfinite(total) else np.full(len(weights), 1 / len(weights))

    def log_likelihood_and_gradient(self, points: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Mean log p(x) over `points` (m, d) and its gradient with respect to every core."""
        d = len(self.cores)
        left_env, right_env = self._environments()
        m = len(points)
        # log p(x) = 2 log|T(x)| - log Z; both terms split into per-core contributions.
        grads = [np.zeros_like(core) for core in self.cores]
        lefts = [np.ones((m, 1))]
        for k in range(d - 1):
            lefts.append(np.einsum("ma,mab->mb", lefts[-1], self.cores[k][:, points[:, k], :].transpose(1, 0, 2)))
        rights = [np.ones((m, 1))]
        for k in range(d - 1, 0, -1):
            rights.insert(0, np.einsum("mab,mb->ma", self.cores[k][:, points[:, k], :].transpose(1, 0, 2), rights[0]))
        # T(x) = left_{d-1}(x) . G_d[:, x_d, 0]
        values = np.einsum("ma,am->m", lefts[-1], self.cores[-1][:, points[:, -1], 0])
        safe_values = np.where(np.abs(values) < 1e-300, 1e-300, values)
        for k in range(d):
            outer = np.einsum("ma,mb->mab", lefts[k], rights[k]) / safe_values[:, None, None]
            np.add.at(grads[k].transpose(1, 0, 2), points[:, k], 2.0 * outer / m)
        z_value = 0.0
        for k in range(d):
            # dZ/dG_k[:, i, :] = 2 L G_k[:, i, :] R (environments are symmetric); divide by Z
            env_grad = 2.0 * np.einsum("ac,cib,bd->aid", left_env[k], self.cores[k], right_env[k])
            z_k = float(np.einsum("aid,aid->", env_grad, self.cores[k])) / 2.0
            grads[k] -= env_grad / z_k
            z_value = z_k
        log_z = np.log(max(z_value, 1e-300)) + self._log_env_scale()
        mean_log_p = float(np.mean(2.0 * np.log(np.abs(safe_values))) - log_z)
        return mean_log_p, grads

    def _log_env_scale(self) -> float:
        """Log of the scale factors dropped while normalising environments (for exact log Z)."""
        scale = 0.0
        env = np.ones((1, 1))
        for k in range(len(self.cores) - 1):
            env = np.einsum("ac,acbd->bd", env, self._transfer(k))
            peak = max(np.abs(env).max(), 1e-300)
            scale += np.log(peak)
            env = env / peak
        return float(scale)

    def probabilities(self) -> np.ndarray:
        """The full probability tensor; only for tests on tiny grids."""
        tensor = self.cores[0]
        for core in self.cores[1:]:
            tensor = np.tensordot(tensor, core, axes=([-1], [0]))
        values = tensor.reshape(self.levels) ** 2
        return values / values.sum()

    def normalise(self) -> None:
        """Rescale each core to unit norm; p is invariant to per-core scaling."""
        for k, core in enumerate(self.cores):
            self.cores[k] = core / max(np.linalg.norm(core), 1e-300)


class Adam:
    """Adam on a list of arrays (PROTES uses Adam for its likelihood ascent)."""

    def __init__(self, shapes: list[tuple[int, ...]], lr: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.m = [np.zeros(shape) for shape in shapes]
        self.v = [np.zeros(shape) for shape in shapes]
        self.t = 0

    def ascend(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        for k, grad in enumerate(grads):
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * grad
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * grad**2
            m_hat = self.m[k] / (1 - self.beta1**self.t)
            v_hat = self.v[k] / (1 - self.beta2**self.t)
            params[k] += self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
