"""GradBench ``ba``: bundle adjustment's reprojection error and its sparse Jacobian.

Each observation i sees camera ``obs[i, 0]`` (11 parameters) and point ``obs[i, 1]``
(3 coordinates) with weight ``w[i]``; its residual is ``w[i] * (project(cam, X) - feat)``
(2 values), and ``1 - w[i]**2`` regularises the weight.  The Jacobian is
``(2p + p) x (11n + 3m + p)`` and sparse: residual rows of observation i have 15 nonzeros
(its camera, its point, its weight).

With isozyme: the objective is plain Python over all observations, writing its residuals
into output arrays; vector forward mode gives the Jacobian as 15 *compressed* columns in
one sweep: seeding parameter c of every camera at once (``dcams[:, c] = 1``) is safe
because each residual depends on one camera only, so the tangent of residual i is
exactly its own Jacobian entry.  The 15 lanes (11 camera parameters, 3 point
coordinates, the weight) give every nonzero, which are then laid out in GradBench's CSR
order (``SparseMat`` of ADBench).
"""

from __future__ import annotations

import math

import numpy as np

import isozyme as iz
from isozyme import BatchDuplicated, Const, Forward

from gradbench.inputs import BA_NCAMPARAMS, BAInput


def rodrigues_rotate_point(rot: np.ndarray, x0: float, x1: float, x2: float) -> tuple:
    """Rotate (x0, x1, x2) by the angle-axis vector ``rot`` (Rodrigues' formula); near a
    zero angle, the first-order form ``x + rot x x``."""
    sqtheta = rot[0] * rot[0] + rot[1] * rot[1] + rot[2] * rot[2]
    if sqtheta != 0.0:
        theta = math.sqrt(sqtheta)
        costheta = math.cos(theta)
        sintheta = math.sin(theta)
        w0 = rot[0] / theta
        w1 = rot[1] / theta
        w2 = rot[2] / theta
        c0 = w1 * x2 - w2 * x1  # w x pt
        c1 = w2 * x0 - w0 * x2
        c2 = w0 * x1 - w1 * x0
        tmp = (w0 * x0 + w1 * x1 + w2 * x2) * (1.0 - costheta)
        return (x0 * costheta + c0 * sintheta + w0 * tmp,
                x1 * costheta + c1 * sintheta + w1 * tmp,
                x2 * costheta + c2 * sintheta + w2 * tmp)
    return (x0 + rot[1] * x2 - rot[2] * x1,
            x1 + rot[2] * x0 - rot[0] * x2,
            x2 + rot[0] * x1 - rot[1] * x0)


def project(cam: np.ndarray, X: np.ndarray) -> tuple:
    """Pinhole projection with radial distortion of point ``X`` by camera ``cam``
    (``[r1 r2 r3 C1 C2 C3 f u0 v0 k1 k2]``)."""
    y0, y1, y2 = rodrigues_rotate_point(cam, X[0] - cam[3], X[1] - cam[4], X[2] - cam[5])
    p0 = y0 / y2
    p1 = y1 / y2
    rsq = p0 * p0 + p1 * p1
    distortion = 1.0 + cam[9] * rsq + cam[10] * rsq * rsq
    return (p0 * distortion * cam[6] + cam[7], p1 * distortion * cam[6] + cam[8])


def objective(cams: np.ndarray, X: np.ndarray, w: np.ndarray, obs: np.ndarray,
              feats: np.ndarray, reproj_err: np.ndarray, w_err: np.ndarray) -> None:
    """ADBench's BA objective: weighted reprojection residuals into ``reproj_err``
    (p, 2) and weight residuals into ``w_err`` (p,)."""
    p = obs.shape[0]
    for i in range(p):
        proj0, proj1 = project(cams[obs[i, 0]], X[obs[i, 1]])
        reproj_err[i, 0] = w[i] * (proj0 - feats[i, 0])
        reproj_err[i, 1] = w[i] * (proj1 - feats[i, 1])
    for i in range(p):
        w_err[i] = 1.0 - w[i] * w[i]


def run_objective(inp: BAInput) -> dict:
    """GradBench's ``objective`` output: the first residual pair and the first weight
    residual, each with the repetition count (as GradBench's tools report them)."""
    p = inp.obs.shape[0]
    reproj_err = np.zeros((p, 2))
    w_err = np.zeros(p)
    iz.autodiff(Forward, objective, Const(inp.cams), Const(inp.X), Const(inp.w), Const(inp.obs),
                Const(inp.feats), Const(reproj_err), Const(w_err))
    return {"reproj_error": {"elements": reproj_err[0].tolist(), "repeated": p},
            "w_err": {"element": float(w_err[0]), "repeated": p}}


def jacobian_blocks(inp: BAInput) -> tuple[np.ndarray, np.ndarray]:
    """The nonzeros: ``J`` (p, 2, 15), the derivatives of each residual pair with respect
    to its camera's 11 parameters, its point's 3 coordinates and its weight, and ``dw``
    (p,), those of the weight residuals.  One vector forward sweep of width 15
    (``BatchDuplicated``): lane c seeds one compressed column."""
    p = inp.obs.shape[0]
    nz = BA_NCAMPARAMS + 4
    dcams = tuple(np.zeros_like(inp.cams) for _ in range(nz))
    dX = tuple(np.zeros_like(inp.X) for _ in range(nz))
    dw = tuple(np.zeros_like(inp.w) for _ in range(nz))
    for c in range(BA_NCAMPARAMS):
        dcams[c][:, c] = 1.0
    for c in range(3):
        dX[BA_NCAMPARAMS + c][:, c] = 1.0
    dw[nz - 1][:] = 1.0
    d_reproj = tuple(np.zeros((p, 2)) for _ in range(nz))
    d_werr = tuple(np.zeros(p) for _ in range(nz))
    iz.autodiff(Forward, objective, BatchDuplicated(inp.cams, dcams), BatchDuplicated(inp.X, dX),
                BatchDuplicated(inp.w, dw), Const(inp.obs), Const(inp.feats),
                BatchDuplicated(np.zeros((p, 2)), d_reproj), BatchDuplicated(np.zeros(p), d_werr))
    return np.stack(d_reproj, axis=2), d_werr[nz - 1]


def run_jacobian(inp: BAInput) -> dict:
    """GradBench's ``jacobian`` output: the Jacobian in CSR form (row pointers, column
    indices, values in ADBench's ``SparseMat`` order), of which GradBench keeps the first
    30 entries of each list and the last one."""
    n, m, p = inp.cams.shape[0], inp.X.shape[0], inp.obs.shape[0]
    J, dw = jacobian_blocks(inp)
    nz = BA_NCAMPARAMS + 4
    cam, pt = inp.obs[:, 0], inp.obs[:, 1]
    # Columns of one residual row: its camera's 11, its point's 3, its weight.
    cols_obs = np.concatenate([
        BA_NCAMPARAMS * cam[:, None] + np.arange(BA_NCAMPARAMS),
        BA_NCAMPARAMS * n + 3 * pt[:, None] + np.arange(3),
        (BA_NCAMPARAMS * n + 3 * m + np.arange(p))[:, None],
    ], axis=1)
    cols = np.concatenate([np.repeat(cols_obs, 2, axis=0).ravel(),
                           BA_NCAMPARAMS * n + 3 * m + np.arange(p)])
    vals = np.concatenate([J.reshape(-1), dw])  # (p, 2, 15) is row-major CSR order
    rows = np.concatenate([np.arange(2 * p + 1) * nz, 2 * p * nz + 1 + np.arange(p)])
    keep = lambda a: [*a[:2 * nz].tolist(), a[-1].item()]  # noqa: E731
    return {"rows": keep(rows), "cols": keep(cols), "vals": keep(vals)}
