"""The policy-gradient estimator on a 2-armed bandit: its Monte-Carlo average converges to the
analytic gradient of J(θ) = Σ_a π_θ(a) r(a)."""

import numpy as np
import torch

from tandem.learners.pg import pg_loss


def test_reinforce_estimate_matches_analytic_gradient_on_bandit():
    torch.manual_seed(0)
    r = torch.tensor([1.0, 3.0])
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    p = torch.softmax(theta, 0).detach()
    # ∂J/∂θ_k = π_k (r_k - J) for a softmax policy
    analytic = (p * (r - (p * r).sum())).numpy()

    n = 200_000
    dist = torch.distributions.Categorical(logits=theta)
    a = dist.sample((n,))
    loss = pg_loss(dist.log_prob(a), r[a], torch.zeros(n), ent_coef=0.0)
    (grad,) = torch.autograd.grad(-loss, theta)  # -loss is the surrogate whose gradient estimates ∇J
    np.testing.assert_allclose(grad.numpy(), analytic, atol=0.01)


def test_baseline_keeps_the_mean_and_cuts_the_variance():
    torch.manual_seed(1)
    r = torch.tensor([1.0, 3.0])
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    dist = torch.distributions.Categorical(logits=theta)
    baseline = float((torch.softmax(theta, 0).detach() * r).sum())

    def per_sample_grads(b: float, n: int = 4000) -> np.ndarray:
        a = dist.sample((n,))
        logp = dist.log_prob(a)
        # ∇ log π(a) for a softmax is onehot(a) - π: exact per-sample gradients of the estimator
        score = torch.nn.functional.one_hot(a, 2).float() - torch.softmax(theta, 0).detach()
        return (score * (r[a] - b)[:, None]).numpy(), logp

    g0, _ = per_sample_grads(0.0)
    g1, _ = per_sample_grads(baseline)
    np.testing.assert_allclose(g0.mean(0), g1.mean(0), atol=0.05)
    assert g1.var(0).sum() < 0.5 * g0.var(0).sum()
