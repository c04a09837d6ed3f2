"""LightGCN (He et al., SIGIR 2020) with BPR loss, on a sparse CSR graph.

Why this module exists: it is the one place that defines what an embedding *is* in
embrec — ego embeddings propagated K times over D^-1/2 A D^-1/2 and averaged over the
K+1 layers (layer 0 included), scored by dot product. The trainer owns the loop; this
module owns forward / loss / predict / full-sort scoring.

Cost model (docs/trainer.md): on CPU a training step pays 2K sparse products over the
whole graph (K forward, K backward) whatever the batch size, plus the batch's gathers
and — with plain autograd — their row-by-row scatter backward, which measured *more*
than the propagation. Hence two custom autograd functions: the propagation, whose
backward reuses the symmetric CSR matrix (``d/dE mean_k A^k E`` applied to G is
``mean_k A^k G``: no transpose, no saved intermediates), and the pair scores, whose
backward is two small sparse products. The L2 term is a weighted sum over the table.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.data import sparse_csr

__all__ = ["LightGCN", "propagate"]


class _Propagate(torch.autograd.Function):
    """y = mean(E, A E, ..., A^K E) for a symmetric sparse A."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
        ctx.adj = adj
        ctx.n_layers = n_layers
        return _layer_mean(adj, ego, n_layers)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        return None, _layer_mean(ctx.adj, grad.contiguous(), ctx.n_layers), None


def _layer_mean(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    out = x.clone()
    for _ in range(n_layers):
        x = adj @ x
        out += x
    return out / (n_layers + 1)


class _PairScores(torch.autograd.Function):
    """scores[b, m] = <U[users[b]], I[items[b, m]]> with a sparse-product backward.

    Autograd through fancy indexing scatters gradients row by row (index_put with
    accumulate), which on CPU cost more than the whole graph propagation. Here the
    gradient is two sparse x dense products instead: with S the (U x I) sparse matrix
    holding g[b, m] at (users[b], items[b, m]), dU = S I and dI = S^T U.
    """

    @staticmethod
    def forward(
        ctx: Any,
        u_all: torch.Tensor,
        i_all: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor,
    ) -> torch.Tensor:
        b, m = items.shape
        ue = u_all.index_select(0, users)
        ie = i_all.index_select(0, items.reshape(-1)).view(b, m, -1)
        ctx.save_for_backward(u_all, i_all, users, items)
        return torch.bmm(ie, ue.unsqueeze(2)).squeeze(2)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        u_all, i_all, users, items = ctx.saved_tensors
        n_u, n_i = u_all.shape[0], i_all.shape[0]
        m = items.shape[1]
        rows = users.repeat_interleave(m)
        cols = items.reshape(-1)
        vals = grad.reshape(-1).to(u_all.dtype)
        s = _csr(rows, cols, vals, n_u, n_i)
        st = _csr(cols, rows, vals, n_i, n_u)
        return s @ i_all, st @ u_all, None, None


def _csr(
    rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int, n_cols: int
) -> torch.Tensor:
    """CSR matrix from (row, col, value) triples; duplicates are summed by the product."""
    order = torch.argsort(rows, stable=True)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
    return sparse_csr(crow, cols[order], vals[order], (n_rows, n_cols))


def pair_scores(
    u_all: torch.Tensor, i_all: torch.Tensor, users: torch.Tensor, items: torch.Tensor
) -> torch.Tensor:
    """``(B, M)`` dot products of ``users`` (B,) with ``items`` (B, M)."""
    out: torch.Tensor = _PairScores.apply(u_all, i_all, users, items)  # type: ignore[no-untyped-call]
    return out


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Layer-mean LightGCN propagation (differentiable w.r.t. ``ego``)."""
    out: torch.Tensor = _Propagate.apply(adj, ego, n_layers)  # type: ignore[no-untyped-call]
    return out


class LightGCN(nn.Module):
    """Ego embeddings for users ``0..U-1`` and items ``U..U+I-1`` in one table."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        adjacency: torch.Tensor,
        *,
        embedding_dim: int = 64,
        n_layers: int = 3,
        init: str = "xavier",
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.adjacency: torch.Tensor
        self.embedding = nn.Parameter(torch.empty(n_users + n_items, embedding_dim))
        with torch.no_grad():
            if init == "normal":
                self.embedding.normal_(0.0, init_std, generator=generator)
            elif init == "xavier":
                # Xavier per table, as the paper's TF code initialises two tables.
                for rows in (slice(0, n_users), slice(n_users, None)):
                    part = self.embedding[rows]
                    bound = (6.0 / (part.shape[0] + part.shape[1])) ** 0.5
                    part.uniform_(-bound, bound, generator=generator)
            else:
                raise ValueError(f"unknown init {init!r}: use 'xavier' or 'normal'")

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (propagated, layer-averaged) user and item embeddings."""
        out = propagate(self.adjacency, self.embedding, self.n_layers)
        return out[: self.n_users], out[self.n_users :]

    def loss(
        self,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        l2: float,
        *,
        hardest: bool = False,
        softmax: bool = False,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """BPR loss + L2 on the batch's ego embeddings; returns (total, bpr, reg).

        ``neg`` is ``(B,)`` or ``(B, n)``; with n negatives every (u, i, j) triple is a
        BPR term, and the L2 term averages the negatives' norms so its scale does not
        depend on n: ``l2 * 0.5 * (|e_u|^2 + |e_i|^2 + mean_j |e_j|^2) / B``.
        With ``hardest`` the n items are candidates and only the one the model scores
        highest is the negative (dynamic negative sampling, Zhang et al. SIGIR 2013).
        """
        if neg.dim() == 1:
            neg = neg[:, None]
        u_all, i_all = self.forward()
        scores = pair_scores(u_all, i_all, users, torch.cat([pos[:, None], neg], 1))
        if softmax:
            # Sampled softmax (InfoNCE): -log of the positive's share of exp(s / t) over
            # the positive and every negative.
            logits = scores / temperature
            bpr = (torch.logsumexp(logits, 1) - logits[:, 0]).mean()
        else:
            neg_s = scores[:, 1:]
            if hardest and neg.shape[1] > 1:
                # Dynamic negative sampling: only the highest-scored candidate counts.
                pick = neg_s.detach().argmax(1, keepdim=True)
                neg_s = neg_s.gather(1, pick)
                neg = neg.gather(1, pick)
            bpr = F.softplus(neg_s - scores[:, :1]).mean()
        # sum over batch rows of |e|^2 == sum over table rows of count * |e|^2: one dense
        # pass over the table instead of three gathers and their scatter backward.
        n = self.n_users + self.n_items
        counts = torch.bincount(users, minlength=n).to(self.embedding.dtype)
        counts += torch.bincount(pos + self.n_users, minlength=n)
        counts += torch.bincount(neg.reshape(-1) + self.n_users, minlength=n) / neg.shape[1]
        reg = 0.5 * (counts @ self.embedding.pow(2).sum(1)) / users.shape[0]
        return bpr + l2 * reg, bpr, reg

    @torch.no_grad()
    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated user and item embeddings without autograd."""
        out = _layer_mean(self.adjacency, self.embedding.detach(), self.n_layers)
        return out[: self.n_users], out[self.n_users :]

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of the (users[k], items[k]) pairs."""
        u_all, i_all = self.final_embeddings()
        return (u_all[users] * i_all[items]).sum(-1)

    @torch.no_grad()
    def full_sort_scores(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` scores over every item."""
        u_all, i_all = self.final_embeddings()
        return u_all[users] @ i_all.T
