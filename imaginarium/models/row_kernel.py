"""The compiled kernel of :mod:`imaginarium.models.rows`: an ensemble step of a few rows in one call.

Every weight lives in one flat float32 array (laid out by ``RowStepper``): per elite, its layers'
weights ``(inputs, outputs)`` row-major, each followed by its bias; then the log-variance bounds, the
target's log-std, the observation bounds, and both heads. Compiled once by numba and cached beside
this file, so a later process loads it instead of compiling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: positions in ``dims``
ELITES, INPUTS, HIDDEN, LAYERS, TARGETS, OBSERVATIONS, HEAD_HIDDEN, HEAD_LAYERS = range(8)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def _silu(x, size):  # pragma: no cover - compiled
    """``x · sigmoid(x)`` in place for the first ``size`` values, with an exp LLVM can vectorise
    (``math.exp`` runs one value at a time, six times slower): ``e^v = 2^k · e^r``, ``r = v - k·ln 2``
    within ±ln 2 / 2, ``e^r`` by Cephes's ``expf`` polynomial (about 1 ulp), ``2^k`` written as float
    bits. ``v`` is held within ±88, where ``2^k`` stays a normal float; NaN stays NaN."""
    poly = np.empty(size, np.float32)
    bits = np.empty(size, np.int32)
    for j in range(size):
        v = -x[j]
        v = min(max(v, np.float32(-87.0)), np.float32(88.0))
        k = np.floor(v * np.float32(1.44269504088896341) + np.float32(0.5))
        r = v - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        poly[j] = p * r * r + r + np.float32(1.0)
        bits[j] = (np.int32(k) + np.int32(127)) << 23
    scale = bits.view(np.float32)
    for j in range(size):
        x[j] = x[j] / (np.float32(1.0) + poly[j] * scale[j])


@njit(cache=True, nogil=True)
def _norm(x, flat, start, eps):  # pragma: no cover - compiled
    """LayerNorm of each row of ``x`` ``(P, H)``, already centred (its mean is folded into the layer
    before), with the scale and shift at ``flat[start:]``; returns where they end."""
    size = x.shape[1]
    for row in range(x.shape[0]):
        total = np.float32(0.0)
        for j in range(size):
            total += x[row, j] * x[row, j]
        inverse = np.float32(1.0 / math.sqrt(total / size + eps))
        for j in range(size):
            x[row, j] = x[row, j] * inverse * flat[start + j] + flat[start + size + j]
    return start + 2 * size


@njit(cache=True, nogil=True)
def _softplus(x):  # pragma: no cover - compiled
    return x if x > 20.0 else math.log1p(math.exp(x))


@njit(cache=True, nogil=True)
def _layer(x, flat, start, inputs, outputs):  # pragma: no cover - compiled
    """``x @ W + b`` for the rows of ``x`` ``(P, inputs)``, ``W`` at ``flat[start:]`` and ``b`` after
    it, and where they end. Each weight is read once for four rows at a time (weights, not rows,
    are what a small batch waits on: 28 µs against 38 for 14 rows of 200 × 200 here), into a fresh
    array LLVM knows aliases no weight, so the inner loop vectorises."""
    bias = start + inputs * outputs
    weight = flat[start:bias].reshape(inputs, outputs)
    rows = x.shape[0]
    out = np.empty((rows, outputs), np.float32)
    for row in range(rows):
        out[row, :] = flat[bias : bias + outputs]
    row = 0
    while row + 4 <= rows:
        for i in range(inputs):
            first, second, third, fourth = x[row, i], x[row + 1, i], x[row + 2, i], x[row + 3, i]
            for j in range(outputs):
                value = weight[i, j]
                out[row, j] += first * value
                out[row + 1, j] += second * value
                out[row + 2, j] += third * value
                out[row + 3, j] += fourth * value
        row += 4
    while row < rows:
        for i in range(inputs):
            first = x[row, i]
            for j in range(outputs):
                out[row, j] += first * weight[i, j]
        row += 1
    return out, bias + outputs


@njit(cache=True, nogil=True)
def _member(flat, dims, x, member):  # pragma: no cover - compiled
    """The raw outputs ``(P, 2·(D + 1))`` of elite ``member`` for the rows ``x`` ``(P, D + A)``."""
    count_in, hidden, layers, targets = dims[INPUTS], dims[HIDDEN], dims[LAYERS], dims[TARGETS]
    per_member = (count_in + 1) * hidden + (layers - 1) * (hidden + 1) * hidden + (hidden + 1) * 2 * targets
    x, start = _layer(x, flat, member * per_member, count_in, hidden)
    _silu(x.reshape(-1), x.size)
    for _ in range(layers - 1):
        x, start = _layer(x, flat, start, hidden, hidden)
        _silu(x.reshape(-1), x.size)
    x, _ = _layer(x, flat, start, hidden, 2 * targets)
    return x


@njit(cache=True, nogil=True)
def _head(flat, dims, start, features, eps):  # pragma: no cover - compiled
    """A head's logits ``(P,)`` (temperature folded in) for the rows of ``features`` ``(P, D)``."""
    observations, hidden, layers = dims[OBSERVATIONS], dims[HEAD_HIDDEN], dims[HEAD_LAYERS]
    x, start = _layer(features, flat, start, observations, hidden)
    start = _norm(x, flat, start, eps)
    _silu(x.reshape(-1), x.size)
    for _ in range(layers - 1):
        x, start = _layer(x, flat, start, hidden, hidden)
        start = _norm(x, flat, start, eps)
        _silu(x.reshape(-1), x.size)
    logits = np.empty(x.shape[0], np.float32)
    for row in range(x.shape[0]):
        logit = flat[start + hidden]
        for j in range(hidden):
            logit += x[row, j] * flat[start + j]
        logits[row] = logit
    return logits


@njit(cache=True, nogil=True)
def step_rows(
    flat, dims, inputs, members, noise, circles, constants, eps, limits, uncertainty, states, rewards, probs
):  # noqa: E501  # pragma: no cover
    """Step every row of ``inputs`` ``(N, D + A)`` (observation, then the action as the first layer
    reads it) with its elite ``members[n]`` and Gaussian ``noise[n]`` ``(D + 1,)``. Writes the next
    observation ``states[n]`` ``(D,)``, clipped and on its circles, the reward ``rewards[n]``, and
    ``probs[n]``: the success and continue probabilities (``constants[k]`` where not NaN), with
    ``uncertainty`` the elites' spread, and 1 where the next state and reward are finite and inside
    ``limits`` (the states' low ``(D,)`` and high ``(D,)``, then the rewards' low and high), else 0."""
    elites, hidden, targets = dims[ELITES], dims[HIDDEN], dims[TARGETS]
    observations, head_hidden = dims[OBSERVATIONS], dims[HEAD_HIDDEN]
    rows = inputs.shape[0]
    shared = elites * (
        (dims[INPUTS] + 1) * hidden + (dims[LAYERS] - 1) * (hidden + 1) * hidden + (hidden + 1) * 2 * targets
    )
    chosen = np.empty((rows, 2 * targets), np.float32)
    spreads = np.zeros(rows)
    if uncertainty:  # every elite on every row; their means' spread in normalised units
        means = np.empty((elites, rows, observations), np.float32)
        for member in range(elites):
            raw = _member(flat, dims, inputs, member)
            means[member] = raw[:, :observations]
            for row in range(rows):
                if members[row] == member:
                    chosen[row] = raw[row]
        for row in range(rows):
            spread = 0.0
            for d in range(observations):
                average = 0.0
                for member in range(elites):
                    average += means[member, row, d]
                average /= elites
                variance = 0.0
                for member in range(elites):
                    variance += (means[member, row, d] - average) ** 2
                scale = flat[shared + 3 * targets + d]  # the target's std
                spread += variance / elites / (scale * scale)
            spreads[row] = math.sqrt(spread)
    else:  # each elite on its own rows, its weights read once for all of them
        for member in range(elites):
            count = 0
            for row in range(rows):
                if members[row] == member:
                    count += 1
            if count == 0:
                continue
            picked = np.empty(count, np.int64)
            count = 0
            for row in range(rows):
                if members[row] == member:
                    picked[count] = row
                    count += 1
            raw = _member(flat, dims, inputs[picked], member)
            for index in range(count):
                chosen[picked[index]] = raw[index]
    for row in range(rows):
        x = inputs[row]
        for t in range(targets):
            high, low = flat[shared + t], flat[shared + targets + t]
            logvar = high - _softplus(high - chosen[row, targets + t])
            logvar = low + _softplus(logvar - low)
            chosen[row, t] += math.exp(0.5 * logvar + flat[shared + 2 * targets + t]) * noise[row, t]
        bounds = shared + 4 * targets
        for d in range(observations):
            value = x[d] + chosen[row, d]
            if value < flat[bounds + d]:  # NaN compares false and stays NaN, as torch.clamp keeps it
                value = flat[bounds + d]
            elif value > flat[bounds + observations + d]:
                value = flat[bounds + observations + d]
            states[row, d] = value
        for pair in range(circles.shape[0]):
            cosine, sine = circles[pair, 0], circles[pair, 1]
            norm = math.sqrt(states[row, cosine] ** 2 + states[row, sine] ** 2)
            if norm < 1e-6:
                norm = 1e-6
            states[row, cosine] /= norm
            states[row, sine] /= norm
        rewards[row] = chosen[row, observations]
    start = shared + 4 * targets + 2 * observations
    head_size = (observations + 3) * head_hidden + (dims[HEAD_LAYERS] - 1) * (head_hidden + 3) * head_hidden
    head_size += head_hidden + 1
    for head in range(2):
        if math.isnan(constants[head]):
            logits = _head(flat, dims, start, states, eps)
            for row in range(rows):
                probs[row, head] = 1.0 / (1.0 + math.exp(-logits[row]))
        else:
            probs[:, head] = constants[head]
        start += head_size
    for row in range(rows):
        probs[row, 2] = spreads[row]
        reward = rewards[row]
        inside = math.isfinite(reward) and limits[2 * observations] <= reward <= limits[2 * observations + 1]
        for d in range(observations):
            value = states[row, d]
            if not (math.isfinite(value) and limits[d] <= value <= limits[observations + d]):
                inside = False
        probs[row, 3] = 1.0 if inside else 0.0
