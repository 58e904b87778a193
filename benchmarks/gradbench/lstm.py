"""GradBench ``lstm``: ADBench's LSTM loss over a character sequence, and its gradient.

l stacked LSTM layers of hidden size b (ADBench's variant: every weight matrix is
diagonal, so a gate is ``sigmoid(input * w + bias)`` elementwise) read a sequence of
characters (rows of b bits) and predict each next one; the loss is the mean of
``-ygold * log_softmax'(ypred)`` over the sequence, where ADBench's normaliser is
``log(sum(exp(ypred)) + 2)``.  ``objective`` is the loss; ``jacobian`` its gradient with
respect to ``main_params`` (2l x 4b: per layer, weights then biases of the forget, input,
output and change gates) and ``extra_params`` (3 x b), flattened row by row and
concatenated.

Written as a numpy user writes it: the layer state is re-bound each step
(``hidden, cell = lstm_step(...)``), the input of the next layer is re-bound in the loop
over layers (``x = hidden``), and the state rows are written back in place.  With
isozyme: the loss is a ``ForwardWithPrimal`` call with every argument Const, the
gradient one reverse sweep (``gradient(Reverse, ...)``) through the c - 1 steps.
"""

from __future__ import annotations

import numpy as np

import isozyme as iz
from isozyme import Const, ForwardWithPrimal, Reverse

from gradbench.inputs import LSTMInput


def sigmoid(v: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-v))


def lstm_step(weight: np.ndarray, bias: np.ndarray, hidden: np.ndarray, cell: np.ndarray,
              x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One layer, one step: the new hidden and cell rows.  ``weight`` and ``bias`` hold
    the four gates' b values each, in the order forget, input, output, change."""
    b = hidden.shape[0]
    forget = sigmoid(x * weight[:b] + bias[:b])
    ingate = sigmoid(hidden * weight[b:2 * b] + bias[b:2 * b])
    outgate = sigmoid(x * weight[2 * b:3 * b] + bias[2 * b:3 * b])
    change = np.tanh(hidden * weight[3 * b:] + bias[3 * b:])
    cell = cell * forget + ingate * change
    hidden = outgate * np.tanh(cell)
    return hidden, cell


def predict(main_params: np.ndarray, extra_params: np.ndarray, state: np.ndarray,
            x: np.ndarray) -> np.ndarray:
    """Run one character ``x`` through the layers, updating ``state`` (2l x b: hidden
    and cell rows of each layer) in place; the prediction of the next character."""
    x = x * extra_params[0]
    for layer in range(state.shape[0] // 2):
        hidden, cell = lstm_step(main_params[2 * layer], main_params[2 * layer + 1],
                                 state[2 * layer], state[2 * layer + 1], x)
        state[2 * layer] = hidden
        state[2 * layer + 1] = cell
        x = hidden
    return x * extra_params[1] + extra_params[2]


def objective(main_params: np.ndarray, extra_params: np.ndarray, state: np.ndarray,
              sequence: np.ndarray) -> float:
    """The loss: predict each character from the ones before it, starting from
    ``state`` (not modified: the steps update a copy)."""
    state = state.copy()
    total = 0.0
    count = 0
    for t in range(sequence.shape[0] - 1):
        ypred = predict(main_params, extra_params, state, sequence[t])
        ynorm = ypred - np.log(np.sum(np.exp(ypred)) + 2.0)
        total += np.sum(sequence[t + 1] * ynorm)
        count += sequence.shape[1]
    return -total / count


def run_objective(inp: LSTMInput) -> float:
    """GradBench's ``objective`` function: the loss, compiled by isozyme."""
    return iz.autodiff(ForwardWithPrimal, objective, Const(inp.main_params),
                       Const(inp.extra_params), Const(inp.state), Const(inp.sequence))[1]


def run_jacobian(inp: LSTMInput) -> np.ndarray:
    """GradBench's ``jacobian`` function: the loss's gradient with respect to the main
    and the extra parameters, each flattened row-major, concatenated."""
    g_main, g_extra, _, _ = iz.gradient(Reverse, objective, inp.main_params, inp.extra_params,
                                        Const(inp.state), Const(inp.sequence))
    return np.concatenate([g_main.reshape(-1), g_extra.reshape(-1)])
