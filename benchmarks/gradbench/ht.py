"""GradBench ``ht``: hand tracking's residuals and their dense Jacobian.

A skinned hand model (22 bones, 544 vertices) is posed by 26 parameters ``theta``
(global rotation, translation, and the finger joints' Euler angles); the residual of
each of the 100 data points is its distance vector to its corresponding vertex
(*simple*), or to a point of its corresponding triangle at barycentric coordinates ``us``
(*complicated*).  The Jacobian is ``3 npts x 26`` (simple) or ``3 npts x (2 + 26)``
(complicated: first the derivatives with respect to each point's own ``u[0]`` and
``u[1]``, then theta's).

With isozyme: the objective is plain numpy on small matrices (4x4 bone transforms, a
loop over bones and points), writing the residuals into an output array; the Jacobian
is forward mode: ``jacobian(Forward, ...)`` for theta's columns, and for the ``us``
columns one vector sweep whose lane c is the tangent ``dus[:, c] = 1`` of every point at
once (each residual depends on its own ``u`` only, so the tangents do not mix).
"""

from __future__ import annotations

import math

import numpy as np

import isozyme as iz
from isozyme import BatchDuplicated, Const, Forward

from gradbench.inputs import HTInput


#: Lanes per forward sweep for theta's 26 columns: two sweeps of one width, so one
#: compilation (the default chunk, 16, would compile widths 16 and 10).
THETA_CHUNK = 13


def to_pose_params(theta: np.ndarray, n_bones: int) -> np.ndarray:
    """Expand the 26 parameters into one row of 3 per bone, after three rows for the
    global rotation, scale (1) and translation. Each finger has three joints; the first
    bends two ways, the others one; the row after each finger stays zero."""
    pose = np.zeros((n_bones + 3, 3))
    pose[0] = theta[0:3]
    pose[1] = 1.0
    pose[2] = theta[3:6]
    i_theta = 6
    i_pose = 5
    for finger in range(5):
        for joint in range(3):
            pose[i_pose, 0] = theta[i_theta]
            i_theta += 1
            if joint == 0:
                pose[i_pose, 1] = theta[i_theta]
                i_theta += 1
            i_pose += 1
        i_pose += 1
    return pose


def euler_angles_to_rotation(xzy: np.ndarray) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for angles stored in the order x, z, y."""
    tx, ty, tz = xzy[0], xzy[2], xzy[1]
    rx = np.array([[1.0, 0.0, 0.0],
                   [0.0, math.cos(tx), -math.sin(tx)],
                   [0.0, math.sin(tx), math.cos(tx)]])
    ry = np.array([[math.cos(ty), 0.0, math.sin(ty)],
                   [0.0, 1.0, 0.0],
                   [-math.sin(ty), 0.0, math.cos(ty)]])
    rz = np.array([[math.cos(tz), -math.sin(tz), 0.0],
                   [math.sin(tz), math.cos(tz), 0.0],
                   [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def angle_axis_to_rotation(aa: np.ndarray) -> np.ndarray:
    """Rotation matrix of an angle-axis vector (the identity below an angle of 1e-4)."""
    norm = math.sqrt(aa[0] * aa[0] + aa[1] * aa[1] + aa[2] * aa[2])
    rot = np.zeros((3, 3))
    if norm < 1e-4:
        rot[0, 0] = 1.0
        rot[1, 1] = 1.0
        rot[2, 2] = 1.0
    else:
        x = aa[0] / norm
        y = aa[1] / norm
        z = aa[2] / norm
        s = math.sin(norm)
        c = math.cos(norm)
        rot[0, 0] = x * x + (1.0 - x * x) * c
        rot[0, 1] = x * y * (1.0 - c) - z * s
        rot[0, 2] = x * z * (1.0 - c) + y * s
        rot[1, 0] = x * y * (1.0 - c) + z * s
        rot[1, 1] = y * y + (1.0 - y * y) * c
        rot[1, 2] = y * z * (1.0 - c) - x * s
        rot[2, 0] = x * z * (1.0 - c) - y * s
        rot[2, 1] = z * y * (1.0 - c) + x * s
        rot[2, 2] = z * z + (1.0 - z * z) * c
    return rot


def skinned_vertex_positions(theta: np.ndarray, parents: np.ndarray, base_relatives: np.ndarray,
                             inverse_base_absolutes: np.ndarray, base_positions: np.ndarray,
                             weights: np.ndarray) -> np.ndarray:
    """The posed hand's vertices (3, verts): pose each bone relative to its parent, chain
    to absolute transforms, blend the bones' transforms of the rest pose by the skinning
    weights, then apply the global rotation, scale and translation."""
    n_bones = parents.shape[0]
    pose = to_pose_params(theta, n_bones)
    absolutes = np.zeros((n_bones, 4, 4))
    positions = np.zeros((3, base_positions.shape[1]))
    for i in range(n_bones):
        tr = np.zeros((4, 4))
        tr[:3, :3] = euler_angles_to_rotation(pose[i + 3])
        tr[3, 3] = 1.0
        relative = base_relatives[i] @ tr
        if parents[i] == -1:
            absolutes[i] = relative
        else:
            absolutes[i] = absolutes[parents[i]] @ relative
        transform = absolutes[i] @ inverse_base_absolutes[i]
        positions += weights[i] * (transform[:3] @ base_positions)
    rot = angle_axis_to_rotation(pose[0]) * pose[1]  # scales column j by pose[1, j]
    return rot @ positions + pose[2][:, None]


def objective(theta: np.ndarray, us: np.ndarray, parents: np.ndarray, base_relatives: np.ndarray,
              inverse_base_absolutes: np.ndarray, base_positions: np.ndarray,
              weights: np.ndarray, triangles: np.ndarray, correspondences: np.ndarray,
              points: np.ndarray, err: np.ndarray) -> None:
    """Residuals into ``err`` (npts, 3): data point minus its model point, which is the
    corresponding vertex when ``us`` is empty, else the point at barycentric
    coordinates ``us[i]`` of the corresponding triangle."""
    positions = skinned_vertex_positions(theta, parents, base_relatives,
                                         inverse_base_absolutes, base_positions, weights)
    npts = correspondences.shape[0]
    if us.shape[0] == 0:
        for i in range(npts):
            for j in range(3):
                err[i, j] = points[i, j] - positions[j, correspondences[i]]
    else:
        for i in range(npts):
            t = correspondences[i]
            u0 = us[i, 0]
            u1 = us[i, 1]
            for j in range(3):
                hand = (u0 * positions[j, triangles[t, 0]] + u1 * positions[j, triangles[t, 1]]
                        + (1.0 - u0 - u1) * positions[j, triangles[t, 2]])
                err[i, j] = points[i, j] - hand


def _model(inp: HTInput) -> tuple:
    """The Const arguments after ``theta`` and ``us``."""
    return (Const(inp.parents), Const(inp.base_relatives), Const(inp.inverse_base_absolutes),
            Const(inp.base_positions), Const(inp.weights), Const(inp.triangles),
            Const(inp.correspondences), Const(inp.points))


def run_objective(inp: HTInput) -> list[float]:
    """GradBench's ``objective`` output: the 3 npts residuals, point by point."""
    err = np.zeros((inp.points.shape[0], 3))
    iz.autodiff(Forward, objective, Const(inp.theta), Const(inp.us), *_model(inp), Const(err))
    return err.reshape(-1).tolist()


def residuals(theta: np.ndarray, us: np.ndarray, parents: np.ndarray, base_relatives: np.ndarray,
              inverse_base_absolutes: np.ndarray, base_positions: np.ndarray,
              weights: np.ndarray, triangles: np.ndarray, correspondences: np.ndarray,
              points: np.ndarray) -> np.ndarray:
    """``objective`` returning its residuals (npts, 3), the form ``jacobian`` takes."""
    err = np.zeros((correspondences.shape[0], 3))
    objective(theta, us, parents, base_relatives, inverse_base_absolutes, base_positions,
              weights, triangles, correspondences, points, err)
    return err


def run_jacobian(inp: HTInput) -> list[list[float]]:
    """GradBench's ``jacobian`` output: rows are residuals, columns ``[us,] theta``.

    theta's 26 columns: ``jacobian(Forward, ...)`` (vector forward mode, two sweeps of
    13 lanes: one compiled width).  The complicated variant's two ``us`` columns: one
    sweep of width 2
    (``BatchDuplicated``) whose lane c seeds ``u[c]`` of every point at once, which is
    exact because residual i depends on its own ``us[i]`` only.
    """
    npts = inp.points.shape[0]
    J_theta, *_ = iz.jacobian(Forward, residuals, inp.theta, Const(inp.us), *_model(inp),
                              chunk=THETA_CHUNK)
    columns = [J_theta.reshape(3 * npts, -1)]
    if inp.complicated:
        seeds = (np.zeros_like(inp.us), np.zeros_like(inp.us))
        seeds[0][:, 0] = 1.0
        seeds[1][:, 1] = 1.0
        d_err = (np.zeros((npts, 3)), np.zeros((npts, 3)))
        iz.autodiff(Forward, objective, Const(inp.theta), BatchDuplicated(inp.us, seeds),
                    *_model(inp), BatchDuplicated(np.zeros((npts, 3)), d_err))
        columns.insert(0, np.stack([d.reshape(-1) for d in d_err], axis=1))
    return np.concatenate(columns, axis=1).tolist()
