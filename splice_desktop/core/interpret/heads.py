"""Exact per-(layer, head, patch) decomposition of a ViT CLIP image embedding (TEXTSPAN / CLIP-InterpreT).

Why this shape: the original code builds a [T, T, H, D] tensor per layer (1.4 GB for B-16). Only the CLS query row
matters for the image embedding, so we hook stock open_clip modules, recompute the CLS attention row and keep the
compact form of the report (section 2.2):

    c[l, h, n] = ( A[l, h, n] * v[l, n, h] @ Q[l, h] / sigma + kappa[l] ) / ||y||
    Q[l, h]    = W_O[l, h]^T diag(gamma_post) P                       (d_h x E, image independent)
    kappa[l]   = [gamma_post * (b_O[l] - mu / K) / sigma + beta_post / K] P / (T * H)

with mu, sigma the final CLS residual's LayerNorm statistics, K = 2L + 1 layer-level parts and ||y|| the norm of the
un-normalised embedding. MLP and embedding parts get the same even share of mu and beta. Every part then sums to the
unit embedding exactly (float32 rounding only), and <c, t> is that part's contribution to the cosine with a unit t.
Memory per image is A [L, H, T] + the layer inputs x [L, T, D] (v = W_V x + b_V is formed only where a per-patch
result needs it), i.e. proportional to the CLS row, never T x T. The hook gets the CLS attention row from
q0 . k_n = x_n . (W_K^T q0) + q0 . b_K, so it never forms K or V either.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from splice_desktop.core.errors import SpliceError


class UnsupportedModelError(SpliceError):
    """The vision tower is not a CLS-pooled open_clip ViT with standard attention blocks."""


@dataclass
class _LayerConsts:
    """Image-independent constants of one block (float32 torch tensors on the model's device)."""

    in_w: Any  # (3D, D)
    in_b: Any  # (3D,)
    bO: Any  # (D,) out-proj bias (LayerScale folded in)


class HeadDecomposition:
    """Compact, exact decomposition of a batch of B images. All outputs are float32 numpy arrays.

    Attributes (numpy, float32):
      embedding  (B, E) unit image embeddings (model output, normalised)
      attn       (B, L, H, T) CLS attention rows of the captured layers (others absent)
      inputs     (B, L, T, D) attention inputs (ln_1 outputs) of the captured layers; value vectors
                 v = W_V x + b_V are formed only where a per-patch result needs them (``values`` for all)
      mlp        (B, L, E) per-layer MLP parts, folded and normalised
      embed_term (B, E) the class-token/embedding part (ln_pre output), folded and normalised
      layer_attn (B, L, E) per-layer attention totals for every layer (captured or not)
      kappa      (B, L, E) per-(layer) bias/mean share of one (head, token) part, already divided by ||y||
      scale      (B,) 1 / (sigma * ||y||), the factor on the A v Q term
    """

    def __init__(
        self,
        *,
        embedding: np.ndarray,
        layers: tuple[int, ...],
        num_layers: int,
        attn: np.ndarray,
        Q: np.ndarray,
        mlp: np.ndarray,
        embed_term: np.ndarray,
        layer_attn: np.ndarray,
        kappa: np.ndarray,
        scale: np.ndarray,
        grid: tuple[int, int],
        mu: Optional[np.ndarray] = None,
        ynorm: Optional[np.ndarray] = None,
        values: Optional[np.ndarray] = None,
        inputs: Optional[np.ndarray] = None,
        Wv: Optional[np.ndarray] = None,
        bv: Optional[np.ndarray] = None,
    ) -> None:
        """Give either ``values`` (B, S, T, H, d) or ``inputs`` (B, S, T, D) with ``Wv`` (S, H, d, D), ``bv`` (S, H, d)."""
        if values is None and (inputs is None or Wv is None or bv is None):
            raise ValueError("HeadDecomposition needs values, or inputs with Wv and bv")
        self.embedding = embedding
        self.layers = layers
        self.num_layers = num_layers
        self.attn = attn
        self._values = values
        self.inputs = inputs
        self._Wv = Wv
        self._bv = bv
        self._Q = Q  # (len(layers), H, d_h, E), shared with the decomposer (not copied)
        self.mlp = mlp
        self.embed_term = embed_term
        self.layer_attn = layer_attn
        self.kappa = kappa
        self.scale = scale
        self.grid = grid
        self.mu = mu if mu is not None else np.zeros_like(scale)
        self.ynorm = ynorm if ynorm is not None else np.ones_like(scale)

    # ---- shape helpers -------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.attn.shape[2])

    @property
    def num_tokens(self) -> int:
        return int(self.attn.shape[3])

    @property
    def embed_dim(self) -> int:
        return int(self.embedding.shape[1])

    def _slot(self, layer: int) -> int:
        layer = layer % self.num_layers
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(f"layer {layer} was not captured (captured: {list(self.layers)})") from None

    @staticmethod
    def _sel(arr: np.ndarray, slots: list[int], hs: Optional[list[int]] = None) -> np.ndarray:
        """arr[slots][:, hs] as a view when the selection is a contiguous range (the constants are tens of MB)."""
        def as_slice(idx: list[int]) -> Any:
            if idx and idx == list(range(idx[0], idx[-1] + 1)):
                return slice(idx[0], idx[-1] + 1)
            return idx

        out = arr[as_slice(slots)]
        if hs is not None:
            out = out[:, as_slice(hs)]
        return out

    # ---- value vectors, formed lazily from the stored inputs ------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """(B, S, T, H, d) value vectors of the captured layers (materialised on first use)."""
        if self._values is None:
            v = np.einsum("bstD,shdD->bsthd", self.inputs, self._Wv, optimize=True)
            v += self._bv[None, :, None]
            self._values = v.astype(np.float32, copy=False)
        return self._values

    def _head_values(self, index: int, s: int, head: int) -> np.ndarray:
        """(T, d) value vectors of one head of one image."""
        if self._values is not None:
            return self._values[index, s, :, head]
        return self.inputs[index, s] @ self._Wv[s, head].T + self._bv[s, head]

    def _dots(self, index: int, slots: list[int], hs: list[int], w: np.ndarray) -> np.ndarray:
        """(S, H', T) v_n . w per head without forming v: x_n . (W_V^T w) + b_V . w."""
        if self._values is not None:
            v = self._values[index][slots][:, :, hs]  # (S, T, H', d)
            return np.einsum("sthd,shd->sht", v, w, optimize=True)
        Wv = self._sel(self._Wv, slots, hs)  # (S, H', d, D)
        z = (w[:, :, None, :] @ Wv)[:, :, 0, :]  # (S, H', D) batched BLAS, not an einsum loop
        x = self._sel(self.inputs[index], slots)  # (S, T, D)
        dots = (x @ z.transpose(0, 2, 1)).transpose(0, 2, 1)  # (S, H', T)
        dots += np.einsum("shd,shd->sh", self._sel(self._bv, slots, hs), w)[:, :, None]
        return dots

    # ---- contributions -------------------------------------------------------------------------------------
    def head_tokens(self, layer: int, head: int, index: int = 0) -> np.ndarray:
        """(T, E) direct contribution of every token (CLS first) through one head to the unit embedding."""
        s = self._slot(layer)
        a = self.attn[index, s, head]  # (T,)
        v = self._head_values(index, s, head)  # (T, d_h)
        out = (a[:, None] * v) @ self._Q[s, head]
        out *= self.scale[index]
        out += self.kappa[index, s]
        return out.astype(np.float32, copy=False)

    def head_u(self, layers: Optional[Sequence[int]] = None) -> np.ndarray:
        """(B, S, H, d_h) attention-weighted value sums u = sum_n A_n v_n: the compact, exact pool record.

        From inputs: u = W_V (sum_n A_n x_n) + b_V (the CLS row sums to 1), one D-vector per head, no v needed.
        """
        slots = [self._slot(l) for l in (self.layers if layers is None else layers)]
        a = self.attn[:, slots]
        if self._values is not None:
            u = np.einsum("bsht,bsthd->bshd", a, self._values[:, slots], optimize=True)
        else:
            xbar = np.einsum("bsht,bstD->bshD", a, self.inputs[:, slots], optimize=True)
            u = np.einsum("bshD,shdD->bshd", xbar, self._sel(self._Wv, slots), optimize=True)
            u += self._sel(self._bv, slots)[None]
        return u.astype(np.float32, copy=False)

    def head_sums(self, layers: Optional[Sequence[int]] = None) -> np.ndarray:
        """(B, len(layers), H, E) token-summed per-head contributions (what TEXTSPAN and the NN search use)."""
        slots = [self._slot(l) for l in (self.layers if layers is None else layers)]
        u = self.head_u([self.layers[s] for s in slots])  # (B, S, H, d)
        out = np.einsum("bshd,shde->bshe", u, self._sel(self._Q, slots), optimize=True)
        out *= self.scale[:, None, None, None]
        out += self.num_tokens * self.kappa[:, slots][:, :, None, :]
        return out.astype(np.float32, copy=False)

    def pool_scalars(self) -> np.ndarray:
        """(B, 3) per-image scalars [1/(sigma |y|), mu/(sigma |y|), 1/|y|] that rebuild kappa with fixed vectors."""
        return np.stack([self.scale, self.mu * self.scale, 1.0 / self.ynorm], axis=1).astype(np.float32)

    def patch_scores(
        self,
        text: np.ndarray,
        layers: Optional[Sequence[int]] = None,
        heads: Optional[Sequence[int]] = None,
        index: int = 0,
        include_cls: bool = False,
    ) -> np.ndarray:
        """(S, H', N) per-patch contributions <c[l, h, n], text> for the chosen layers and heads (one image).

        One d_h-dim dot per patch: w = Q[l, h] @ text, then A * (v . w) * scale + kappa . text.
        """
        t = np.asarray(text, dtype=np.float32).reshape(-1)
        slots = [self._slot(l) for l in (self.layers if layers is None else layers)]
        hs = list(range(self.num_heads)) if heads is None else list(heads)
        w = self._sel(self._Q, slots, hs) @ t  # (S, H', d); a view of Q for contiguous selections
        a = self.attn[index][slots][:, hs]  # (S, H', T)
        dots = self._dots(index, slots, hs, w)
        scores = a * dots * self.scale[index]
        scores += (self.kappa[index, slots] @ t)[:, None, None]
        if not include_cls:
            scores = scores[:, :, 1:]
        return scores.astype(np.float32, copy=False)

    def patch_map(
        self,
        text: np.ndarray,
        layers: Optional[Sequence[int]] = None,
        heads: Optional[Sequence[int]] = None,
        index: int = 0,
    ) -> np.ndarray:
        """(gh, gw) patch grid of summed contributions over the chosen layers and heads (no CLS token)."""
        s = self.patch_scores(text, layers, heads, index).sum(axis=(0, 1))
        return s.reshape(self.grid).astype(np.float32, copy=False)

    def total(self, index: int = 0) -> np.ndarray:
        """Sum of every part: equals ``embedding[index]`` up to float32 rounding (the identity tests check)."""
        total = self.embed_term[index].astype(np.float64) + self.mlp[index].sum(axis=0)
        uncaptured = [l for l in range(self.num_layers) if l not in set(self.layers)]
        total = total + self.layer_attn[index, uncaptured].sum(axis=0)
        if self.layers:
            total = total + self.head_sums()[index].sum(axis=(0, 1))
        return total.astype(np.float32)

    def nbytes(self) -> int:
        """Per-image arrays held (the decomposer's shared constants Q, W_V are not counted)."""
        arrays = [self.attn, self.mlp, self.embed_term, self.layer_attn, self.kappa]
        arrays.append(self._values if self._values is not None else self.inputs)
        return int(sum(x.nbytes for x in arrays))


def _vision_parts(loaded_or_model: Any) -> Any:
    model = getattr(loaded_or_model, "model", loaded_or_model)
    visual = getattr(model, "visual", model)
    tr = getattr(visual, "transformer", None)
    if tr is None or not hasattr(tr, "resblocks"):
        raise UnsupportedModelError(
            "Per-head decomposition needs an open_clip Vision Transformer (ViT-*); this model's image tower "
            f"({type(visual).__name__}) has no transformer blocks. Choose a ViT model."
        )
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise UnsupportedModelError(
            "Per-head decomposition needs a CLS-token-pooled ViT; this model pools differently "
            f"(pool_type={getattr(visual, 'pool_type', '?')!r}). Choose a standard CLIP ViT."
        )
    for i, blk in enumerate(tr.resblocks):
        attn = getattr(blk, "attn", None)
        if attn is None or getattr(attn, "in_proj_weight", None) is None or not hasattr(attn, "out_proj"):
            raise UnsupportedModelError(
                f"Block {i} has no fused in_proj attention; this open_clip block type is not supported."
            )
        plain = ("NoneType", "Identity")
        extra = [n for n in ("ln_attn", "ln_1_kv") if type(getattr(blk, n, None)).__name__ not in plain]
        extra += [n for n in ("ln_inner", "head_scale", "ln_q", "ln_k", "logit_scale")
                  if type(getattr(attn, n, None)).__name__ not in plain]
        if extra:
            raise UnsupportedModelError(
                f"Block {i} rescales or normalises attention inside the block ({', '.join(extra)}); the exact "
                "decomposition supports standard CLIP attention blocks only."
            )
    return visual


class HeadDecomposer:
    """Hooks a loaded open_clip ViT once; ``run`` returns an exact ``HeadDecomposition`` for a batch.

    ``layers`` picks the blocks whose per-head, per-token terms are kept (default: all). Other blocks still appear
    as per-layer attention totals, so the identity holds whichever layers are kept.
    """

    def __init__(self, loaded: Any, layers: Optional[Sequence[int]] = None) -> None:
        import torch

        self.loaded = loaded
        self.visual = _vision_parts(loaded)
        blocks = self.visual.transformer.resblocks
        self.num_layers = len(blocks)
        self.layers: tuple[int, ...] = tuple(
            sorted({l % self.num_layers for l in (range(self.num_layers) if layers is None else layers)})
        )
        attn0 = blocks[0].attn
        self.num_heads = int(attn0.num_heads)
        self.width = int(attn0.in_proj_weight.shape[1])  # nn.MultiheadAttention and open_clip Attention alike
        self.head_dim = self.width // self.num_heads
        proj = self.visual.proj
        with torch.no_grad():
            dev = blocks[0].attn.in_proj_weight.device
            P = proj.detach().float() if proj is not None else torch.eye(self.width, device=dev)
            ln = self.visual.ln_post
            self._gamma = ln.weight.detach().float() if ln.weight is not None else torch.ones(self.width, device=dev)
            self._beta = ln.bias.detach().float() if ln.bias is not None else torch.zeros(self.width, device=dev)
            self._eps = float(ln.eps)
            self._P = P
            self._gP = self._gamma[:, None] * P  # (D, E)
            self._consts: dict[int, _LayerConsts] = {}
            Qs: list[np.ndarray] = []  # per layer (H, d_h, E): W_O[:, h]^T diag(gamma) P, LayerScale folded in
            for l in self.layers:
                blk = blocks[l]
                ls = self._layerscale(blk, "ls_1")
                Wo = blk.attn.out_proj.weight.detach().float()  # (D, D): out = Wo @ x
                bo = blk.attn.out_proj.bias
                bo = bo.detach().float() if bo is not None else torch.zeros(self.width, device=dev)
                if ls is not None:
                    Wo = ls[:, None] * Wo
                    bo = ls * bo
                # Q[h] = Wo[:, h]^T @ diag(gamma) P  -> (d_h, E)
                Qs.append((Wo.T @ self._gP).reshape(self.num_heads, self.head_dim, -1).cpu().numpy())
                ib = blk.attn.in_proj_bias
                self._consts[l] = _LayerConsts(
                    in_w=blk.attn.in_proj_weight.detach().float(),
                    in_b=ib.detach().float() if ib is not None else torch.zeros(3 * self.width, device=dev),
                    bO=bo,
                )
            D, H, d = self.width, self.num_heads, self.head_dim
            self._Wv_np = (
                np.stack([self._consts[l].in_w[2 * D:].reshape(H, d, D).cpu().numpy() for l in self.layers])
                if self.layers else np.zeros((0, H, d, D), np.float32)
            ).astype(np.float32)
            self._bv_np = (
                np.stack([self._consts[l].in_b[2 * D:].reshape(H, d).cpu().numpy() for l in self.layers])
                if self.layers else np.zeros((0, H, d), np.float32)
            ).astype(np.float32)
            self._Q_np = (
                np.ascontiguousarray(np.stack(Qs), dtype=np.float32)
                if self.layers
                else np.zeros((0, self.num_heads, self.head_dim, P.shape[1]), np.float32)
            )
        self.embed_dim = int(P.shape[1])
        with torch.no_grad():
            K = 2 * self.num_layers + 1
            # fixed vectors that rebuild kappa from the 3 pool scalars (numpy on the CPU: the pool lives there)
            self._X = {
                l: ((self._gamma * self._consts[l].bO) @ P).cpu().numpy().astype(np.float32) for l in self.layers
            }
            self._Y = ((self._gamma @ P) / K).cpu().numpy().astype(np.float32)
            self._Z = ((self._beta @ P) / K).cpu().numpy().astype(np.float32)
        gs = getattr(self.visual, "grid_size", None)
        self.grid: tuple[int, int] = (int(gs[0]), int(gs[1])) if gs is not None else (0, 0)
        self.batch_first = bool(getattr(self.visual.transformer, "batch_first", True))

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1] + 1

    def head_outputs(self, u: np.ndarray, scalars: np.ndarray, layer: int, head: int) -> np.ndarray:
        """(K, E) token-summed parts of one head from stored u (K, d_h) and scalars (K, 3): exact, no forward.

        c = a (u Q) + T kappa,  T kappa = (a X_l - b Y + c Z) / H  with a, b, c the pool scalars.
        """
        layer = layer % self.num_layers
        if layer not in self._consts:
            raise KeyError(f"layer {layer} not prepared by this decomposer (layers {list(self.layers)})")
        Q = self._Q_np[self.layers.index(layer), head]  # (d, E)
        u = np.asarray(u, dtype=np.float32)
        s = np.asarray(scalars, dtype=np.float32)
        out = u @ Q
        out *= s[:, 0:1]
        out += (s[:, 0:1] * self._X[layer] - s[:, 1:2] * self._Y + s[:, 2:3] * self._Z) / np.float32(self.num_heads)
        return out

    @staticmethod
    def _layerscale(blk: Any, name: str) -> Any:
        mod = getattr(blk, name, None)
        gamma = getattr(mod, "gamma", None)
        return gamma.detach().float() if gamma is not None else None

    # ------------------------------------------------------------------------------------------------------------
    def run(self, images: Any) -> HeadDecomposition:
        """One forward pass of the vision tower with hooks; ``images`` is a preprocessed (B, 3, H, W) tensor."""
        import torch

        visual = self.visual
        blocks = visual.transformer.resblocks
        H, d = self.num_heads, self.head_dim
        store: dict[str, Any] = {"A": {}, "X": {}, "mlp": {}, "attn_out": {}}
        bf = self.batch_first
        # Hooks are per module, not per call: another thread running the same model (e.g. the SpLiCE encoder)
        # would fire them too, so each hook only records calls made from this thread.
        owner = threading.get_ident()

        def btd(x: Any) -> Any:  # block tensors are [T, B, D] when the transformer is not batch-first
            return x if bf else x.transpose(0, 1)

        def pre_attn(l: int):
            c = self._consts[l]

            def hook(_mod: Any, args: tuple, kwargs: Optional[dict] = None) -> None:
                if threading.get_ident() != owner:
                    return
                x = args[0] if args else kwargs["query"]
                x = btd(x).float()  # (B, T, D)
                B, T, D = x.shape
                # CLS row only, without forming K or V: q0.k_n = x_n . (W_K^T q0) + q0 . b_K  (T*D*H, not T*D^2)
                q0 = torch.nn.functional.linear(x[:, 0], c.in_w[:D], c.in_b[:D]).view(B, H, d)
                r = torch.einsum("bhd,hdD->bhD", q0, c.in_w[D : 2 * D].view(H, d, D))
                q0_bk = torch.einsum("bhd,hd->bh", q0, c.in_b[D : 2 * D].view(H, d))
                logits = torch.einsum("btD,bhD->bht", x, r) + q0_bk[..., None]
                store["A"][l] = torch.softmax(logits / (d**0.5), dim=-1)
                store["X"][l] = x

            return hook

        def post(kind: str, l: int):
            def hook(_mod: Any, _inp: Any, out: Any) -> None:
                if threading.get_ident() != owner:
                    return
                o = out[0] if isinstance(out, tuple) else out
                store[kind][l] = btd(o)[:, 0].float()

            return hook

        handles = []
        try:
            handles.append(visual.ln_pre.register_forward_hook(post("mlp", -1)))
            for l, blk in enumerate(blocks):
                if l in self._consts:
                    handles.append(blk.attn.register_forward_pre_hook(pre_attn(l), with_kwargs=True))
                handles.append(blk.ls_1.register_forward_hook(post("attn_out", l)))
                handles.append(blk.ls_2.register_forward_hook(post("mlp", l)))
            handles.append(visual.transformer.register_forward_hook(post("attn_out", -1)))
            dtype = next(visual.parameters()).dtype
            dev = next(visual.parameters()).device
            with torch.inference_mode():
                pooled = visual(images.to(dev, dtype=dtype))
                if isinstance(pooled, tuple):
                    pooled = pooled[0]
                return self._finish(pooled.float(), store)
        finally:
            for h in handles:
                h.remove()

    def _finish(self, pooled: Any, store: dict[str, Any]) -> HeadDecomposition:
        import torch

        L = self.num_layers
        r = store["attn_out"].pop(-1)  # final CLS residual (B, D)
        e = store["mlp"].pop(-1)  # ln_pre CLS output (B, D)
        mu = r.mean(dim=-1, keepdim=True)
        sigma = torch.sqrt(r.var(dim=-1, unbiased=False, keepdim=True) + self._eps)
        y = ((r - mu) / sigma * self._gamma + self._beta) @ self._P  # equals pooled up to rounding
        ynorm = y.norm(dim=-1, keepdim=True)
        K = 2 * L + 1
        share_b = self._beta / K

        def fold(part: Any) -> Any:  # layer-level part -> its share of the unit embedding
            return (((part - mu / K) / sigma) * self._gamma + share_b) @ self._P / ynorm

        mlp = torch.stack([fold(store["mlp"][l]) for l in range(L)], dim=1)
        layer_attn = torch.stack([fold(store["attn_out"][l]) for l in range(L)], dim=1)
        embed_term = fold(e)
        B = r.shape[0]
        E = self._P.shape[1]
        if self.layers:
            T = store["A"][self.layers[0]].shape[-1]
            TH = T * self.num_heads
            kappa = torch.stack(
                [
                    (((self._consts[l].bO - mu / K) / sigma) * self._gamma + share_b) @ self._P / TH / ynorm
                    for l in self.layers
                ],
                dim=1,
            )
            attn = torch.stack([store["A"][l] for l in self.layers], dim=1)
            inputs = torch.stack([store["X"][l] for l in self.layers], dim=1)
        else:
            kappa = torch.zeros(B, 0, E)
            attn = torch.zeros(B, 0, self.num_heads, 1)
            inputs = torch.zeros(B, 0, 1, self.width)
        emb = torch.nn.functional.normalize(pooled, dim=-1)
        np32 = lambda t: t.detach().cpu().numpy().astype(np.float32, copy=False)  # noqa: E731
        return HeadDecomposition(
            embedding=np32(emb),
            layers=self.layers,
            num_layers=L,
            attn=np.ascontiguousarray(np32(attn)),
            inputs=np.ascontiguousarray(np32(inputs)),
            Wv=self._Wv_np,
            bv=self._bv_np,
            Q=self._Q_np,
            mlp=np32(mlp),
            embed_term=np32(embed_term),
            layer_attn=np32(layer_attn),
            kappa=np32(kappa),
            scale=np32((1.0 / (sigma * ynorm)).reshape(-1)),
            grid=self.grid,
            mu=np32(mu.reshape(-1)),
            ynorm=np32(ynorm.reshape(-1)),
        )
