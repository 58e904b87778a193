"""GradBench's small inputs, read from the bundled files or generated as GradBench does.

Each loader returns the input twice over: as the JSON object GradBench's eval sends to a
tool (``json``, what the C++ golden tool reads, see ``make_golden.py``) and as the numpy
arrays an isozyme user works with. Nothing here is downloaded: the ADBench data files of
``ba``, ``ht`` and ``lstm`` are under ``data/`` (MIT, ``data/*/LICENSE.TXT``), ``kmeans``,
``ode`` and ``det`` inputs are drawn from numpy's legacy generator with GradBench's seed,
``gmm``'s from numpy's ``default_rng`` with GradBench's seed, and ``particle``/``saddle``
take one number each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "data"

#: Camera parameters per camera, ADBench's layout: rotation (3), centre (3), focal
#: length, principal point (2), radial distortion (2).
BA_NCAMPARAMS = 11


@dataclass
class BAInput:
    """A ``ba`` problem expanded as GradBench's tools expand it (each datum repeated)."""

    json: dict[str, Any]
    cams: np.ndarray  # (n, 11)
    X: np.ndarray  # (m, 3)
    w: np.ndarray  # (p,)
    feats: np.ndarray  # (p, 2)
    obs: np.ndarray  # (p, 2) int64: camera index, point index


def ba_files() -> list[Path]:
    """The bundled ``ba`` data files (GradBench's smallest)."""
    return sorted((DATA / "ba").glob("ba*_n*_m*_p*.txt"))


def load_ba(path: Path) -> BAInput:
    """Read a ``ba`` file (n m p, one camera, one point, one weight, one feature) and
    expand it: observation i sees camera ``i % n`` and point ``i % m``."""
    lines = path.read_text().splitlines()
    n, m, p = (int(v) for v in lines[0].split())
    cam = [float(v) for v in lines[1].split()]
    x = [float(v) for v in lines[2].split()]
    w = float(lines[3])
    feat = [float(v) for v in lines[4].split()]
    idx = np.arange(p, dtype=np.int64)
    return BAInput(
        json={"n": n, "m": m, "p": p, "cam": cam, "x": x, "w": w, "feat": feat},
        cams=np.tile(np.array(cam), (n, 1)),
        X=np.tile(np.array(x), (m, 1)),
        w=np.full(p, w),
        feats=np.tile(np.array(feat), (p, 1)),
        obs=np.stack([idx % n, idx % m], axis=1),
    )


@dataclass
class HTInput:
    """A hand-tracking problem: pose ``theta`` (26), the hand model and the data."""

    json: dict[str, Any]
    theta: np.ndarray  # (26,)
    us: np.ndarray  # (npts, 2), empty for the simple variant
    parents: np.ndarray  # (bones,) int64, -1 for the root
    base_relatives: np.ndarray  # (bones, 4, 4)
    inverse_base_absolutes: np.ndarray  # (bones, 4, 4)
    base_positions: np.ndarray  # (4, verts), homogeneous
    weights: np.ndarray  # (bones, verts)
    triangles: np.ndarray  # (tris, 3) int64
    correspondences: np.ndarray  # (npts,) int64
    points: np.ndarray  # (npts, 3)

    @property
    def complicated(self) -> bool:
        """True when the residual also depends on the barycentric ``us``."""
        return self.us.size > 0


def ht_files() -> list[Path]:
    """The bundled ``ht`` instances: hand1 (100 points), complicated and simple."""
    return sorted((DATA / "ht").glob("*_hand*_t26_c*.txt"))


def load_ht(path: Path) -> HTInput:
    """Read ADBench's hand model (``data/ht/model``: bones, vertices, triangles) and one
    instance file (correspondences and points, ``us`` for the complicated variant, theta)."""
    model = DATA / "ht" / "model"
    bones = [line.split(":") for line in (model / "bones.txt").read_text().splitlines()]
    names = [b[0] for b in bones]
    parents = np.array([int(b[1]) for b in bones], dtype=np.int64)
    rel = np.array([[float(v) for v in b[2:18]] for b in bones]).reshape(-1, 4, 4)
    inv_abs = np.array([[float(v) for v in b[18:34]] for b in bones]).reshape(-1, 4, 4)
    vert_lines = (model / "vertices.txt").read_text().splitlines()
    positions = np.ones((len(vert_lines), 4))
    weights = np.zeros((len(vert_lines), len(bones)))
    for i, line in enumerate(vert_lines):
        atoms = line.split(":")
        positions[i, :3] = [float(a) for a in atoms[:3]]
        for j in range(int(atoms[8])):  # (bone, weight) pairs after the count
            weights[i, int(atoms[9 + 2 * j])] = float(atoms[10 + 2 * j])
    tri_lines = (model / "triangles.txt").read_text().splitlines()
    triangles = np.array([[int(v) for v in line.split(":")] for line in tri_lines], dtype=np.int64)
    lines = path.read_text().splitlines()
    npts, ntheta = (int(v) for v in lines[0].split())
    rows = [line.split() for line in lines[1 : 1 + npts]]
    corr = np.array([int(r[0]) for r in rows], dtype=np.int64)
    points = np.array([[float(v) for v in r[1:]] for r in rows])
    rest = lines[1 + npts :]
    complicated = path.name.startswith("complicated")
    us = (np.array([[float(v) for v in r.split()] for r in rest[:npts]]) if complicated
          else np.zeros((0, 2)))
    theta = np.array([float(v) for v in rest[npts if complicated else 0 :][:ntheta]])
    js = {
        "theta": theta.tolist(),
        "us": us.tolist(),
        "data": {
            "model": {
                "bone_count": len(bones),
                "bone_names": names,
                "parents": parents.tolist(),
                "base_relatives": rel.tolist(),
                "inverse_base_absolutes": inv_abs.tolist(),
                "base_positions": positions.tolist(),
                "weights": weights.tolist(),
                "triangles": triangles.tolist(),
                "is_mirrored": False,
            },
            "correspondences": corr.tolist(),
            "points": points.tolist(),
        },
    }
    return HTInput(
        json=js, theta=theta, us=us, parents=parents, base_relatives=rel,
        inverse_base_absolutes=inv_abs, base_positions=np.ascontiguousarray(positions.T),
        weights=np.ascontiguousarray(weights.T), triangles=triangles,
        correspondences=corr, points=points,
    )


@dataclass
class KMeansInput:
    """``n`` points in ``d`` dimensions and ``k`` centroids (the last ``k`` points)."""

    json: dict[str, Any]
    points: np.ndarray  # (n, d)
    centroids: np.ndarray  # (k, d)


def kmeans_input(k: int = 10, n: int = 1000, d: int = 8) -> KMeansInput:
    """GradBench's first (smallest) kmeans input: ``np.random.seed(31337)``, then
    ``rand(n, d)``; the centroids are the last k points, so no cluster is empty."""
    rng = np.random.RandomState(31337)
    points = rng.rand(n, d)
    centroids = points[-k:].copy()
    return KMeansInput(
        json={"points": points.tolist(), "centroids": centroids.tolist()},
        points=points, centroids=centroids,
    )


#: particle's and saddle's inputs as GradBench's evals send them.
PARTICLE_W0 = 0.0
SADDLE_START = (1.0, 1.0)


@dataclass
class ODEInput:
    """``ode``: the coefficients ``x`` (n,) and the number of Runge-Kutta steps ``s``."""

    json: dict[str, Any]
    x: np.ndarray  # (n,)
    s: int

    @property
    def description(self) -> str:
        """GradBench's name for the input."""
        return f"n={self.x.shape[0]},s={self.s}"


def ode_inputs(count: int = 3) -> list[ODEInput]:
    """GradBench's ``count`` smallest ``ode`` inputs, drawn as its eval draws them:
    ``np.random.seed(31337)``, then ``rand(n)`` for each (n, s) of n in (1000, 10000,
    100000), s in (1, 10, 100), in order of n * s (a stable sort)."""
    combos = sorted(((n, s) for n in (1000, 10000, 100000) for s in (1, 10, 100)),
                    key=lambda v: v[0] * v[1])
    rng = np.random.RandomState(31337)
    out = []
    for n, s in combos[:count]:
        x = rng.rand(n)
        out.append(ODEInput(json={"x": x.tolist(), "s": s}, x=x, s=s))
    return out


@dataclass
class LSTMInput:
    """``lstm``: l layers of hidden size b, a sequence of c characters (b bits each)."""

    json: dict[str, Any]
    main_params: np.ndarray  # (2l, 4b): per layer, a row of weights, a row of biases
    extra_params: np.ndarray  # (3, b): input weight, output weight, output bias
    state: np.ndarray  # (2l, b): per layer, the hidden row and the cell row
    sequence: np.ndarray  # (c, b)


def lstm_files() -> list[Path]:
    """The bundled ``lstm`` inputs (ADBench's, GradBench's smallest sizes: l = 2 and 4,
    c = 1024, the first characters of Shakespeare's sonnets as 14-bit rows)."""
    return sorted((DATA / "lstm").glob("lstm_l*_c*.txt"))


def load_lstm(path: Path) -> LSTMInput:
    """Read an ADBench ``lstm`` file: ``l c b``, then blank-line separated matrices
    (main parameters, extra parameters, state, sequence)."""
    blocks = [b for b in path.read_text().split("\n\n") if b.strip()]
    l, c, b = (int(v) for v in blocks[0].split())
    mats = [np.array([[float(v) for v in row.split()] for row in block.strip().splitlines()])
            for block in blocks[1:5]]
    main_params, extra_params, state, sequence = mats
    assert main_params.shape == (2 * l, 4 * b) and sequence.shape == (c, b)
    return LSTMInput(
        json={"main_params": main_params.tolist(), "extra_params": extra_params.tolist(),
              "state": state.tolist(), "sequence": sequence.tolist()},
        main_params=main_params, extra_params=extra_params, state=state, sequence=sequence)


@dataclass
class GMMInput:
    """``gmm``: n points in d dimensions, k components, a Wishart prior (m, gamma)."""

    json: dict[str, Any]
    alpha: np.ndarray  # (k,)
    mu: np.ndarray  # (k, d)
    q: np.ndarray  # (k, d): logs of the diagonals of the precision factors
    l: np.ndarray  # (k, d (d - 1) / 2): their strictly lower parts, column by column
    x: np.ndarray  # (n, d)
    m: int
    gamma: float

    @property
    def description(self) -> str:
        """GradBench's name for the input: ``d_k_n``."""
        return f"{self.x.shape[1]}_{self.alpha.shape[0]}_{self.x.shape[0]}"


def gmm_input(d: int, k: int, n: int = 1000, m: int = 0, gamma: float = 1.0,
              seed: int = 31337) -> GMMInput:
    """A ``gmm`` input drawn as GradBench's eval draws it (``default_rng(seed)``: x,
    alpha, mu, q, l in that order, x and mu row by row)."""
    rng = np.random.default_rng(seed=seed)
    x = np.array([rng.normal(size=d) for _ in range(n)])
    alpha = rng.normal(size=k)
    mu = np.array([rng.uniform(size=d) for _ in range(k)])
    q = np.array([rng.normal(size=d) for _ in range(k)])
    l = np.array([rng.normal(size=d * (d - 1) // 2) for _ in range(k)])
    js = {"d": d, "k": k, "n": n, "x": x.tolist(), "m": m, "gamma": gamma,
          "alpha": alpha.tolist(), "mu": mu.tolist(), "q": q.tolist(), "l": l.tolist()}
    return GMMInput(json=js, alpha=alpha, mu=mu, q=q, l=l, x=x, m=m, gamma=gamma)


def gmm_inputs() -> list[GMMInput]:
    """GradBench's three smallest ``gmm`` inputs: (d, k) = (2, 5), (2, 10), (10, 5), n = 1000."""
    return [gmm_input(d, k) for d, k in ((2, 5), (2, 10), (10, 5))]


@dataclass
class DetInput:
    """``det``: an ell x ell matrix (GradBench sends it flat, row-major)."""

    json: dict[str, Any]
    A: np.ndarray  # (ell, ell)

    @property
    def description(self) -> str:
        """GradBench's name for the input: ``ell``."""
        return str(self.A.shape[0])


def det_inputs(ells: tuple[int, ...] = (5, 6)) -> list[DetInput]:
    """GradBench's smallest ``det`` inputs: ``np.random.seed(31337)``, then
    ``rand(ell * ell)`` for ell = 5, 6, ..., 11 in turn; those of size ``ells``
    (``data/golden/det.json`` holds 5, 6 and 7)."""
    rng = np.random.RandomState(31337)
    out = []
    for ell in range(5, max(ells) + 1):
        a = rng.rand(ell * ell)
        if ell in ells:
            out.append(DetInput(json={"A": a.tolist(), "ell": ell}, A=a.reshape(ell, ell)))
    return out
