"""gpt2_training.evaluation: validation loss and perplexity, averaged per example."""

from __future__ import annotations

import pytest
import torch

from gpt2_training.evaluation import eval_model_loss
from lsp_data.loaders import DataError


class ScriptedModel(torch.nn.Module):
    """Returns, for a batch, loss = the mean of its rows' first input id and ppl = 10 * loss,
    so each batch's values are known by hand. Records what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[bool, torch.Tensor | None, bool]] = []
        self.inputs: list[tuple[torch.Tensor, ...]] = []

    def forward(self, input_ids, position_ids, token_type_ids, labels):
        self.calls.append((self.training, token_type_ids, torch.is_grad_enabled()))
        self.inputs.append((input_ids, position_ids, labels))
        if input_ids.device.type == "meta":  # no values there: any loss will do
            return torch.tensor(1.0), torch.tensor(2.0)
        loss = input_ids[:, 0].float().mean()
        return loss, 10 * loss


def batch(first_ids: list[int]) -> tuple[torch.Tensor, ...]:
    n = len(first_ids)
    input_ids = torch.tensor([[i, 0] for i in first_ids])
    token_types = torch.ones_like(input_ids)
    positions = torch.arange(2).repeat(n, 1)
    labels = torch.tensor([[-1, i] for i in first_ids])
    # as DynamicBatchingLoader yields: 4 tensors, then context and response lengths
    return input_ids, positions, token_types, labels, torch.zeros(n), torch.zeros(n)


def test_the_batch_reaches_the_model_on_the_device() -> None:
    model = ScriptedModel()
    b = batch([3, 4])
    eval_model_loss(model, [b], torch.device("cpu"))
    ((input_ids, positions, labels),) = model.inputs
    assert input_ids.equal(b[0]) and positions.equal(b[1]) and labels.equal(b[3])
    eval_model_loss(model, [b], torch.device("meta"))
    assert all(t.device.type == "meta" for t in model.inputs[-1])


def test_means_are_weighted_by_example_count() -> None:
    # batch losses 2 (3 examples) and 10 (1 example): per example (2*3 + 10) / 4 = 4,
    # where a mean of the batch means would give 6.
    model = ScriptedModel()
    loss, ppl = eval_model_loss(model, [batch([1, 2, 3]), batch([10])], torch.device("cpu"))
    assert loss == pytest.approx(4.0) and ppl == pytest.approx(40.0)
    # order does not matter, a single batch is its own mean
    assert eval_model_loss(model, [batch([10]), batch([1, 2, 3])], torch.device("cpu")) == (
        pytest.approx(4.0),
        pytest.approx(40.0),
    )
    assert eval_model_loss(model, [batch([5, 7])], torch.device("cpu")) == (6.0, 60.0)


def test_runs_in_eval_mode_without_gradients_and_honours_no_token_id() -> None:
    model = ScriptedModel().train()
    eval_model_loss(model, [batch([1]), batch([2])], torch.device("cpu"))
    assert not model.training  # left in eval mode: the caller switches back
    assert [(training, types, grad) for training, types, grad in model.calls] == [
        (False, None, False),
        (False, None, False),
    ]
    model.calls.clear()
    eval_model_loss(model, [batch([1])], torch.device("cpu"), no_token_id=False)
    ((_, types, _),) = model.calls
    assert types is not None and types.eq(1).all()


def test_forward_runs_inside_the_autocast_given() -> None:
    seen = []

    class Checking(ScriptedModel):
        def forward(self, *args):
            seen.append(torch.is_autocast_enabled("cpu"))
            return super().forward(*args)

    bf16 = torch.autocast(device_type="cpu", dtype=torch.bfloat16)  # one object, every batch
    eval_model_loss(Checking(), [batch([1]), batch([2])], torch.device("cpu"), True, bf16)
    assert seen == [True, True] and not torch.is_autocast_enabled("cpu")
    eval_model_loss(Checking(), [batch([1])], torch.device("cpu"))
    assert seen[-1] is False


def test_no_example_is_a_clear_error() -> None:
    message = "^the validation file gave no example that fits --max_seq_length$"
    with pytest.raises(DataError, match=message):
        eval_model_loss(ScriptedModel(), [], torch.device("cpu"))
