"""GPT-2 LM head model with DialoGPT's training loss and perplexity (docs/REFERENCE.md §5).

``GPT2LMHeadModel`` here is a thin subclass of the ``transformers`` class, so checkpoints
saved from it are plain Hugging Face GPT-2 checkpoints, and ``generate`` works unchanged.
Only the toolkit's call convention is added::

    loss, ppl = model(input_ids, position_ids, token_type_ids, lm_labels)          # training
    loss, ppl = model(input_ids, position_ids, token_type_ids, lm_labels, weights)  # --use_weights
    logits = model(input_ids)                                                       # (B, T, V)

Labels are aligned with the input positions already (the data pipeline shifted them), so
nothing is shifted here; label -1 marks positions without a target.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2Tokenizer
from transformers import GPT2LMHeadModel as _HFGPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

__all__ = ["IGNORE_LABEL", "GPT2Config", "GPT2LMHeadModel", "GPT2Tokenizer"]

IGNORE_LABEL = -1  # DialoGPT's ignore index (not Hugging Face's -100)


class GPT2LMHeadModel(_HFGPT2LMHeadModel):
    """Hugging Face GPT-2 (SDPA attention, tied embeddings) with DialoGPT's loss.

    Call convention (positional order as in the original toolkit):

    * ``lm_labels`` given: returns ``(loss, ppl)``, both 0-dim float32 tensors, where
      ``loss = sum(ce) / count(labels != -1)`` over the whole batch and
      ``ppl = exp(mean over sequences of sum(ce in seq) / count(labels != -1 in seq))``.
      ``ppl`` is detached: it is a statistic, never a training target.
    * ``weights`` (float, same shape as ``lm_labels``) additionally given: the loss becomes
      ``sum(w * ce) / sum(w)`` over labelled positions; ``ppl`` keeps the unweighted
      definition so that runs with and without weights report comparable perplexities.
    * no ``lm_labels`` and none of Hugging Face's keyword arguments: returns the logits
      tensor ``(batch, seq, vocab)``.
    * any Hugging Face keyword argument (``attention_mask``, ``cache``, ``return_dict``,
      ``labels``, ... as ``generate`` and other HF code pass them): the parent's forward
      runs unchanged and returns its ``ModelOutput``.

    Label-less sequences: the original divided each sequence's CE sum by its label count,
    so a row without labels produced 0/0 = NaN and turned the batch perplexity into NaN.
    Here such rows are left out of the perplexity mean (they contribute nothing to the loss
    either). A batch with no label at all yields ``loss = 0`` (still attached to the graph,
    so ``backward`` gives zero gradients) and ``ppl = exp(0) = 1``.
    """

    def __init__(self, config: GPT2Config) -> None:
        # SDPA unless the caller explicitly asked for another kernel (e.g. "eager" to inspect
        # attention weights); transformers resolves a None choice itself otherwise.
        if getattr(config, "_attn_implementation", None) is None:
            config._attn_implementation = "sdpa"
        # DialoGPT's LM head *is* the word embedding matrix.
        config.tie_word_embeddings = True
        super().__init__(config)
        # GPT-2's "gelu_new" is the tanh approximation of GELU, which transformers writes as
        # seven element-wise operations (each a pass over the MLP's activations, forward and
        # backward); torch's fused kernel computes the same function in one. The config keeps
        # its name, so saved checkpoints stay plain GPT-2 ones.
        if config.activation_function == "gelu_new":
            for module in self.modules():
                if isinstance(module, GPT2MLP):
                    module.act = torch.nn.GELU(approximate="tanh")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        lm_labels: torch.LongTensor | None = None,
        weights: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **hf_kwargs,
    ):
        # `attention_mask` and `logits_to_keep` are named in the signature because
        # `generate` inspects forward's parameters to decide whether to pass them.
        if lm_labels is None:
            if weights is not None:
                raise ValueError("weights were given without lm_labels")
            plain_call = attention_mask is None and not hf_kwargs
            if plain_call and isinstance(logits_to_keep, int) and logits_to_keep == 0:
                return self.lm_head(self._hidden(input_ids, position_ids, token_type_ids))
            return super().forward(
                input_ids=input_ids,
                position_ids=position_ids,
                token_type_ids=token_type_ids,
                attention_mask=attention_mask,
                logits_to_keep=logits_to_keep,
                **hf_kwargs,
            )
        if attention_mask is not None or hf_kwargs:
            extra = sorted(hf_kwargs) + (["attention_mask"] if attention_mask is not None else [])
            raise TypeError(f"lm_labels cannot be combined with {extra}")
        hidden = self._hidden(input_ids, position_ids, token_type_ids)
        return self._loss_and_ppl(hidden, lm_labels, weights)

    def _hidden(
        self,
        input_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        kwargs = {}
        # With --no_token_id the trainer passes None; the transformer then adds no
        # token-type embedding at all (not even of id 0).
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        # use_cache=False: config.use_cache is True for generation, but building a KV cache
        # in a training/eval forward pass only costs memory.
        out = self.transformer(input_ids, position_ids=position_ids, use_cache=False, **kwargs)
        return out.last_hidden_state

    @torch.compiler.disable  # data-dependent shapes (labelled rows): eager, not recompiled
    def _loss_and_ppl(
        self,
        hidden: torch.Tensor,
        lm_labels: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if lm_labels.shape != hidden.shape[:2]:
            raise ValueError(
                f"lm_labels shape {tuple(lm_labels.shape)} does not match input shape "
                f"{tuple(hidden.shape[:2])}"
            )
        batch = lm_labels.size(0)
        labelled = lm_labels != IGNORE_LABEL
        # Context tokens carry no label and are most of a dialogue batch, so the
        # (positions x vocab) projection is only computed where a target exists.
        rows = labelled.nonzero(as_tuple=True)[0]
        targets = lm_labels[labelled].long()  # int32 labels from numpy pipelines too
        # Any other negative label (e.g. HF's -100) or one past the vocabulary is an error,
        # never a silently skipped or wrapped-around target. (An assert on the device: no wait.)
        vocab = self.lm_head.weight.shape[0]
        torch._assert_async(((targets >= 0) & (targets < vocab)).all())

        seq_count = labelled.sum(dim=1).float()
        # Each labelled position's share of the loss, known before the loss itself.
        if weights is None:
            coef = torch.full_like(targets, 1.0, dtype=torch.float32) / seq_count.sum().clamp(
                min=1.0
            )
        else:
            if weights.shape != lm_labels.shape:
                raise ValueError(
                    f"weights shape {tuple(weights.shape)} differs from lm_labels shape "
                    f"{tuple(lm_labels.shape)}"
                )
            w = weights[labelled].float()
            denom = w.sum()
            coef = w / torch.where(denom != 0, denom, torch.ones_like(denom))
        loss, ce = projected_cross_entropy(hidden[labelled], self.lm_head.weight, targets, coef)
        seq_sum = ce.new_zeros(batch).index_add(0, rows, ce)

        with torch.no_grad():
            has_labels = seq_count > 0
            seq_mean = seq_sum / seq_count.clamp(min=1.0)
            n_seq = has_labels.sum().clamp(min=1).float()
            ppl = torch.exp((seq_mean * has_labels).sum() / n_seq)
        return loss, ppl


# Logits are computed this many elements at a time (rows x vocabulary): large enough for the
# matrix product to run near its peak, small enough for a CPU chunk to stay in the last-level
# cache while its softmax is taken; a GPU chunk is large enough to keep the device busy.
CHUNK_ELEMENTS = {"cpu": 1 << 23, "cuda": 1 << 26}

# On the CPU in float32 the logits are made straight into the gradient's buffer, this many
# rows at a time, each block's product split into tiles of this many vocabulary columns.
# One (rows x vocabulary) product with a short inner dimension (the model's width) runs at
# about half of MKL's peak here; (512 x 768) tiles keep its output in cache and run near the
# peak (measured on a 2-core AVX2 EPYC: 74 against 134 to 145 GFLOP/s).
CPU_FLOAT32_TILE = (512, 768)

# Buffers kept between calls on the CPU (see _scratch), by purpose and dtype.
_CPU_BUFFERS: dict[tuple[str, torch.dtype], torch.Tensor] = {}


def _scratch(
    purpose: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """An uninitialised (rows x cols) tensor; on the CPU its memory is reused from call to call.

    A fresh CPU tensor of this size (the logits' gradient is hundreds of MB) comes from the
    kernel as untouched pages, and faulting them in costs about as much as a pass over the
    data; a step would pay that every time. The CUDA caching allocator already reuses memory.
    A CPU buffer is only valid until the next call with the same purpose and dtype.
    """
    if device.type != "cpu":
        return torch.empty(rows, cols, dtype=dtype, device=device)
    needed = rows * cols
    buffer = _CPU_BUFFERS.get((purpose, dtype))
    if buffer is None or buffer.numel() < needed:
        # A little headroom: batch sizes vary from step to step.
        buffer = torch.empty(needed + needed // 4, dtype=dtype)
        _CPU_BUFFERS[(purpose, dtype)] = buffer
    return buffer[:needed].view(rows, cols)


def _tiled_product(hidden: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """``out = hidden @ weight.T``, made a tile of vocabulary columns at a time."""
    cols = CPU_FLOAT32_TILE[1]
    for start in range(0, weight.shape[0], cols):
        end = min(weight.shape[0], start + cols)
        torch.mm(hidden, weight[start:end].t(), out=out[:, start:end])


def _fused_softmax_applies(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a chunk's softmax is taken by torch's softmax kernel, which makes its max, sum
    and quotient in float32 in one sweep over each row (on the CPU, three times cheaper than
    the written-out passes); the loss is then read off the target's probability. float16
    is left out: probabilities under 6e-8 have no float16 value, and its loss would lose them.
    On a GPU the written-out passes cost little, and need no check for underflow, which
    would wait for the device."""
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)


class _ProjectedCrossEntropy(torch.autograd.Function):
    """``sum(coef * cross_entropy(hidden @ weight.T, targets))`` and the per-row losses.

    The (rows x vocabulary) logits are the largest tensor of a small model's step, and the
    plain path passes over them a dozen times (projection, casts, log-softmax, its backward,
    zero-filling the gradient). Here they are made a chunk of rows at a time, turned into
    the loss and into their gradient ``coef * (softmax - onehot)`` while the chunk is hot in
    cache, and only that gradient is kept (in the compute dtype) for the two matrix products
    of the backward pass, which run once, here, over all rows. The weights ``coef`` are
    known before the loss (1/count, or w/sum(w)), so nothing is lost by computing the
    gradients in the forward pass; backward only scales them by the incoming gradient.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        coef: torch.Tensor,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, vocab = hidden.shape[0], weight.shape[0]
        device = hidden.device
        grads_needed = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]  # type: ignore[attr-defined]
        fused = _fused_softmax_applies(device, dtype)
        with torch.autocast(device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            ce = torch.empty(n, dtype=torch.float32, device=device)
            # float32 on the CPU: logits made in tiles, in the buffer their softmax goes to.
            tiled = fused and dtype == torch.float32
            if tiled:
                step = CPU_FLOAT32_TILE[0]
            else:
                step = max(1, CHUNK_ELEMENTS.get(device.type, 1 << 26) // vocab)
                chunk = _scratch("logits", min(n, step), vocab, dtype, device)
            grad_logits = _scratch("grad", n, vocab, dtype, device) if grads_needed else None
            # The stored gradient is coef / max(coef) * (softmax - onehot), at most 1 in size,
            # and max(coef) is applied after the products: a float16 gradient of an unscaled
            # loss (coef is about 1/positions) would otherwise lose its small probabilities.
            coef_max = coef.max().clamp(min=torch.finfo(torch.float32).tiny) if n else coef.sum()
            relative = coef / coef_max
            # Without per-position weights every share is 1: the scaling pass is skipped.
            # (Only the fused path asks, and it runs on the CPU, where the check waits for nothing.)
            uniform = fused and bool((relative == 1).all())
            for start in range(0, n, step):
                end = min(n, start + step)
                at = torch.arange(end - start, device=device)
                rows_targets = targets[start:end]
                if fused:
                    probs = (
                        grad_logits[start:end]
                        if grad_logits is not None
                        else _scratch("probs", end - start, vocab, dtype, device)
                    )
                    if tiled:
                        _tiled_product(h[start:end], w, out=probs)
                        logits = probs  # the softmax runs in place: one pass, row by row
                    else:
                        logits = torch.mm(h[start:end], w.t(), out=chunk[: end - start])
                    torch.ops.aten._softmax.out(logits, 1, False, out=probs)
                    ce[start:end] = _ce_from_probs(probs[at, rows_targets], logits.dtype)
                    if grad_logits is None:
                        continue
                    share = relative[start:end].to(dtype)
                    if not uniform:
                        probs.mul_(share.unsqueeze(1))
                    probs[at, rows_targets] -= share
                else:
                    logits = torch.mm(h[start:end], w.t(), out=chunk[: end - start])
                    exact = logits.float()
                    target_logit = exact[at, rows_targets]
                    # log-sum-exp written out so that exp(logits - max) is made once, in
                    # place, and serves both the loss and the softmax of the gradient.
                    peak = exact.amax(dim=1, keepdim=True)
                    total = exact.sub_(peak).exp_().sum(dim=1, keepdim=True)
                    ce[start:end] = (peak + total.log()).squeeze(1) - target_logit
                    if grad_logits is None:
                        continue
                    share = relative[start:end].unsqueeze(1)
                    exact.mul_(share / total)  # coef * softmax
                    exact[at, rows_targets] -= share.squeeze(1)
                    grad_logits[start:end] = exact
            if fused:
                _recompute_underflowed(ce, h, w, targets)
            if grad_logits is not None:
                if dtype == weight.dtype:
                    grad_weight = torch.mm(grad_logits.t(), h)
                else:
                    # In bf16 the product runs about twice as fast made transposed, with the
                    # long vocabulary as its contiguous dimension (CPU); backward casts it
                    # anyway, and transposes it in the same pass. (In float32 it is slower.)
                    grad_weight = torch.mm(h.t().contiguous(), grad_logits).t()
                ctx.save_for_backward(torch.mm(grad_logits, w), grad_weight)
                ctx.coef_max = coef_max  # type: ignore[attr-defined]
                ctx.dtypes = (hidden.dtype, weight.dtype)  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(ce)
        return (coef * ce).sum(), ce

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor, _grad_ce: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors  # type: ignore[attr-defined]
        hidden_dtype, weight_dtype = ctx.dtypes  # type: ignore[attr-defined]
        scale = ctx.coef_max * grad_loss  # type: ignore[attr-defined]
        # The weight's gradient is vocabulary-sized: one pass to cast (and lay out) it where
        # needed, then scaled in place. It must come out contiguous and unshared, so that
        # autograd adds the embedding's gradient to it in place rather than into a new one.
        if grad_weight.dtype != weight_dtype or not grad_weight.is_contiguous():
            grad_weight = torch.empty(
                grad_weight.shape, dtype=weight_dtype, device=grad_weight.device
            ).copy_(grad_weight)
        return (
            grad_hidden.to(hidden_dtype).mul_(scale),
            grad_weight.mul_(scale),
            None,
            None,
            None,
        )


def _ce_from_probs(target_probs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """-log p(target), in float32; rows whose probability fell below the dtype's smallest
    normal number (a loss above about 87) come back as NaN, to be recomputed exactly."""
    p = target_probs.float()
    return torch.where(p >= torch.finfo(dtype).tiny, -torch.log(p), torch.nan)


def _recompute_underflowed(
    ce: torch.Tensor, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor
) -> None:
    # Rare: only a target the model all but rules out. (A CPU path: the check costs nothing.)
    rows = ce.isnan().nonzero(as_tuple=True)[0]
    if rows.numel():
        logits = torch.mm(h[rows], w.t()).float()
        ce[rows] = logits.logsumexp(dim=1) - logits.gather(1, targets[rows].unsqueeze(1))[:, 0]


def projected_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    coef: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-row cross-entropy) of ``hidden @ weight.T`` against ``targets``, the loss
    being ``sum(coef * ce)``; matrix products in the autocast dtype when autocast is on, the
    softmax's sums always in float32."""
    device_type = hidden.device.type
    dtype = (
        torch.get_autocast_dtype(device_type)
        if torch.is_autocast_enabled(device_type)
        else weight.dtype
    )
    return _ProjectedCrossEntropy.apply(hidden, weight, targets, coef, dtype)
