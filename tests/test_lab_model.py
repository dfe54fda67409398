"""lorebook.lab model and attention: shapes, causality, metric = dot at identity, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from lorebook.lab.attention import MetricSharedAttention
from lorebook.lab.config import LabConfig
from lorebook.lab.model import GPT, parameter_counts

VARIANTS = [
    {"attention": "dot"},
    {"attention": "metric", "metric_form": "full"},
    {"attention": "metric", "metric_form": "symmetric"},
    {"attention": "metric", "metric_form": "lowrank", "metric_rank": 4},
    {"attention": "metric-shared"},
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = {"task": "sort", "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 20}


def make(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(LabConfig(**{**SMALL, **overrides}), vocab_size=12).eval()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_shapes_and_loss(variant):
    model = make(**variant)
    x_bt = torch.randint(0, 12, (3, 16))
    logits_btv, loss = model(x_bt, x_bt)
    assert logits_btv.shape == (3, 16, 12)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert abs(loss.item() - math.log(12)) < 0.5  # small init: close to uniform


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_future_tokens_cannot_change_past_logits(variant):
    model = make(**variant)
    x_bt = torch.randint(0, 12, (2, 16))
    changed_bt = x_bt.clone()
    changed_bt[:, 10:] = (x_bt[:, 10:] + 1) % 12
    with torch.no_grad():
        before, after = model(x_bt)[0], model(changed_bt)[0]
    assert torch.allclose(before[:, :10], after[:, :10], atol=1e-6)
    assert not torch.allclose(before[:, 10:], after[:, 10:], atol=1e-3)


@pytest.mark.parametrize("form", ["full", "symmetric", "lowrank"])
def test_metric_at_identity_equals_dot_exactly(form):
    dot = make(attention="dot")
    metric = make(attention="metric", metric_form=form)
    missing, unexpected = metric.load_state_dict(dot.state_dict(), strict=False)
    assert not unexpected and missing and all("metric" in name for name in missing)
    for block in metric.blocks:
        assert torch.equal(block.attn.metric(), torch.eye(8).expand(4, 8, 8))
    x_bt = torch.randint(0, 12, (4, 20))
    with torch.no_grad():
        assert torch.equal(dot(x_bt)[0], metric(x_bt)[0])


def test_metric_attention_learns_away_from_identity():
    model = make(attention="metric", metric_form="symmetric")
    model.train()
    x_bt = torch.randint(0, 12, (4, 20))
    model(x_bt, x_bt)[1].backward()
    grad = model.blocks[0].attn.metric_hdd.grad
    assert grad is not None and grad.abs().sum() > 0


def test_metric_shared_is_psd_and_matches_explicit_scores():
    torch.manual_seed(1)
    attn = MetricSharedAttention(n_embd=16, n_head=2).eval()
    with torch.no_grad():
        attn.tril_hn.normal_()
    m_hdd = attn.metric()
    assert torch.allclose(m_hdd, m_hdd.transpose(1, 2))
    assert (torch.linalg.eigvalsh(m_hdd) > -1e-5).all()
    assert torch.equal(attn.factor(), attn.factor().tril())
    x_btc = torch.randn(3, 7, 16)
    # Reference: the formula written out, p·M·pᵀ/√d with a causal mask, values p, then the mixer.
    p_bhtd = attn.shared(x_btc).view(3, 7, 2, 8).transpose(1, 2)
    att_bhtt = p_bhtd @ m_hdd @ p_bhtd.transpose(2, 3) / math.sqrt(8)
    att_bhtt = att_bhtt.masked_fill(torch.ones(7, 7).triu(1).bool(), float("-inf")).softmax(-1)
    expected_btc = attn.mixer((att_bhtt @ p_bhtd).transpose(1, 2).reshape(3, 7, 16))
    with torch.no_grad():
        assert torch.allclose(attn(x_btc), expected_btc, atol=1e-5)


def test_parameter_counts_per_variant():
    c, h, layers, d = 32, 4, 2, 8
    counts = {
        key: parameter_counts(make(**v))
        for key, v in (("dot", VARIANTS[0]), ("metric", VARIANTS[1]), ("shared", VARIANTS[4]))
    }
    assert counts["dot"]["attention"] == layers * 4 * c * c
    assert counts["metric"]["attention"] == layers * (4 * c * c + h * d * d)
    assert counts["shared"]["attention"] == layers * (2 * c * c + h * d * (d + 1) // 2)
    # Tied head: the output matrix is the token embedding, counted once.
    embeddings = 12 * c + 20 * c
    assert counts["dot"]["total"] - counts["dot"]["non_embedding"] == embeddings
    assert counts["shared"]["total"] < counts["dot"]["total"]
