"""Randomised 3-D torso phantoms: FDG activity, 511-keV attenuation and organ/lesion labels.

Shapes are analytic (super-ellipses, ellipsoids, tubes) evaluated on a grid ``oversample`` times
finer than the reconstruction grid in all three axes; the finer grid is what the data are
simulated from, the voxel-averaged coarse grid is the ground truth a reconstruction is compared to.

Array layout is ``[z, y, x]`` in DICOM patient axes: x towards the patient's left, y towards
posterior, z towards the head (so ``volume[k]`` shown with ``imshow`` is a radiological view,
anterior up). ``z`` is a body coordinate in mm: 0 at the pelvic floor, ~800 at the shoulders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BMI_CLASSES",
    "LABELS",
    "MU_511_PER_CM",
    "REGIONS",
    "LARGE_LESION_RADIUS_MM",
    "UNSEEN_FEATURES",
    "Phantom",
    "lesion_class",
    "make_phantom",
]

BMI_CLASSES = {"low": (18.5, 23.0), "high": (28.0, 35.0)}
# Centre (body z, mm) of each region's axial window.
REGIONS = {"pelvis": 100.0, "abdomen": 515.0, "thorax": 640.0}
UNSEEN_FEATURES = ("bladder", "catheter", "both")

LABELS = {
    "background": 0,
    "soft_tissue": 1,
    "fat": 2,
    "lung": 3,
    "liver": 4,
    "spleen": 5,
    "myocardium": 6,
    "blood": 7,
    "kidney": 8,
    "bone": 9,
    "marrow": 10,
    "bladder": 11,
    "bladder_unseen": 12,
    "catheter": 13,
}
LESION_ID0 = 21  # lesion i (1-based) has label LESION_ID0 + i - 1

# Linear attenuation coefficients at 511 keV, 1/cm.
MU_511_PER_CM = {
    "background": 0.0,
    "soft_tissue": 0.096,
    "fat": 0.090,
    "lung": 0.030,
    "liver": 0.097,
    "spleen": 0.097,
    "myocardium": 0.097,
    "blood": 0.097,
    "kidney": 0.097,
    "bone": 0.160,
    "marrow": 0.110,
    "bladder": 0.096,
    "bladder_unseen": 0.096,
    "catheter": 0.096,
    "lesion": 0.096,
}

# FDG uptake ranges (SUV) drawn uniformly per study; lesions are 3-8x the liver.
SUV_RANGES = {
    "soft_tissue": (0.8, 1.1),
    "fat": (0.25, 0.45),
    "lung": (0.3, 0.5),
    "liver": (2.0, 2.5),
    "spleen": (1.6, 2.0),
    "myocardium": (3.0, 6.0),
    "blood": (1.5, 2.0),
    "kidney": (3.0, 4.0),
    "bone": (0.4, 0.6),
    "marrow": (1.3, 1.7),
    "bladder": (10.0, 30.0),
    "bladder_unseen": (60.0, 100.0),
}
LESION_TO_LIVER = (3.0, 8.0)

# Lesion classes, evaluated separately: "large" (radius >= 10 mm: >= 25 voxels even at 96 x 96
# over 512 mm with 4-mm slices, so the ROI mean measures recovery, not mostly the rim) and
# "small" (sub-centimetre radius, dominated by partial volume). Liver studies get
# N_LARGE_LIVER large and N_SMALL_LIVER small liver lesions, surrounded by at least
# LARGE_MARGIN_MM / SMALL_MARGIN_MM of liver, plus the random small extra-hepatic ones.
LARGE_LESION_RADIUS_MM = 10.0
LARGE_LESION_MAX_MM = 14.0
SMALL_LIVER_RADIUS_MM = (4.5, 7.5)
N_LARGE_LIVER, N_SMALL_LIVER = 2, 2
LARGE_MARGIN_MM, SMALL_MARGIN_MM = 8.0, 6.0

F18_HALF_LIFE_S = 6586.2
DOSE_MBQ_PER_KG = 3.0
UPTAKE_TIME_S = 3600.0

# Lean-body half-width (lateral) and half-depth (AP) in mm along body z, before BMI scaling.
Z_CONTROL_MM = np.array([0, 60, 120, 200, 280, 360, 450, 520, 600, 700, 800], float)
_A_CTRL = np.array([150, 158, 162, 158, 150, 148, 150, 156, 160, 162, 158], float)
_B_CTRL = np.array([98, 103, 106, 104, 100, 100, 102, 105, 107, 107, 100], float)
_BODY_P = 2.5  # super-ellipse exponent: a flatter, more rectangular torso than an ellipse


@dataclass
class Phantom:
    """One randomised patient on a window of ``n_slices`` transaxial slices.

    ``activity`` (kBq/mL), ``mu`` (1/cm) and ``labels`` are on the reconstruction grid
    ``(n_slices, shape, shape)``; the ``*_fine`` arrays are ``oversample`` times finer in every
    axis and have ``margin`` extra fine slices above and below (for axial blurring).
    """

    activity: np.ndarray
    mu: np.ndarray
    labels: np.ndarray
    label_names: dict[str, int]
    activity_fine: np.ndarray
    mu_fine: np.ndarray
    margin: int
    oversample: int
    pixel_mm: float
    slice_mm: float
    z_mm: np.ndarray
    lesions: list[dict]
    meta: dict = field(default_factory=dict)
    # fine-grid labels (same layout as ``mu_fine``), for other modalities (tgd.repro.sim.ct)
    labels_fine: np.ndarray | None = None


def lesion_class(radius_mm: float) -> str:
    """"large" for a radius of at least ``LARGE_LESION_RADIUS_MM``, else "small"."""
    return "large" if float(radius_mm) >= LARGE_LESION_RADIUS_MM else "small"


class _Grid:
    """Fine voxel-centre coordinates and a painter restricted to bounding boxes."""

    def __init__(self, n: int, pixel_mm: float, z: np.ndarray) -> None:
        c = (np.arange(n) - (n - 1) / 2) * pixel_mm
        self.x, self.y, self.z = c, c, z
        self.labels = np.zeros((len(z), n, n), np.int16)
        self.values: dict[int, float] = {}

    def _range(self, coords: np.ndarray, lo: float, hi: float) -> slice:
        i0 = int(np.searchsorted(coords, lo, "left"))
        i1 = int(np.searchsorted(coords, hi, "right"))
        return slice(i0, max(i0, i1))

    def paint(self, label: int, inside: Callable, box: tuple, where: int | None = None) -> int:
        """Set ``label`` where ``inside(x, y, z)`` holds within ``box``; returns voxels painted."""
        x0, x1, y0, y1, z0, z1 = box
        sz, sy, sx = (self._range(self.z, z0, z1), self._range(self.y, y0, y1),
                      self._range(self.x, x0, x1))
        if sz.start >= sz.stop or sy.start >= sy.stop or sx.start >= sx.stop:
            return 0
        zz = self.z[sz][:, None, None]
        yy = self.y[sy][None, :, None]
        xx = self.x[sx][None, None, :]
        m = np.broadcast_to(inside(xx, yy, zz), (zz.shape[0], yy.shape[1], xx.shape[2]))
        block = self.labels[sz, sy, sx]
        if where is not None:
            m = m & (block == where)
        block[m] = label
        return int(m.sum())


def _ellipsoid(c, r, rot_deg: float = 0.0):
    cx, cy, cz = c
    rx, ry, rz = r
    ca, sa = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))

    def inside(x, y, z):
        u = (x - cx) * ca + (y - cy) * sa
        v = -(x - cx) * sa + (y - cy) * ca
        return (u / rx) ** 2 + (v / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    ext = max(rx, ry)
    return inside, (cx - ext, cx + ext, cy - ext, cy + ext, cz - rz, cz + rz)


def _tube_z(cx, cy, r, z0, z1):
    def inside(x, y, z):
        return ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) & (z >= z0) & (z <= z1)

    return inside, (cx - r, cx + r, cy - r, cy + r, z0, z1)


def _polyline_tube(points: np.ndarray, r: float):
    pts = np.asarray(points, float)

    def inside(x, y, z):
        best = None
        for p, q in zip(pts[:-1], pts[1:], strict=True):
            d = q - p
            t = ((x - p[0]) * d[0] + (y - p[1]) * d[1] + (z - p[2]) * d[2]) / float(d @ d)
            t = np.clip(t, 0.0, 1.0)
            dist2 = (x - p[0] - t * d[0]) ** 2 + (y - p[1] - t * d[1]) ** 2 + (
                z - p[2] - t * d[2]) ** 2
            best = dist2 if best is None else np.minimum(best, dist2)
        return best <= r * r

    lo, hi = pts.min(0) - r, pts.max(0) + r
    return inside, (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])


def _sphere(c, r):
    return _ellipsoid(c, (r, r, r))


class BodyOutline:
    """BMI-dependent torso outline: lean body (muscle, organs) inside a subcutaneous-fat layer."""

    def __init__(self, bmi: float, rng: np.random.Generator) -> None:
        self.k = 1.0 + 0.008 * (bmi - 22.0)  # lean/visceral growth with BMI
        self.fat = max(6.0, 8.0 + 3.2 * (bmi - 20.0)) * rng.uniform(0.9, 1.1)
        self.jitter = rng.uniform(0.97, 1.03, size=2)

    def lean_ab(self, z):
        a = np.interp(z, Z_CONTROL_MM, _A_CTRL) * self.k * self.jitter[0]
        b = np.interp(z, Z_CONTROL_MM, _B_CTRL) * self.k * self.jitter[1]
        return a, b

    def outer(self, z):
        a, b = self.lean_ab(z)
        return a + self.fat, b + 1.1 * self.fat, b + 0.6 * self.fat  # a, anterior b, posterior b

    def _superellipse(self, x, y, a, b_ant, b_post):
        b = np.where(y < 0, b_ant, b_post)
        return np.abs(x / a) ** _BODY_P + np.abs(y / b) ** _BODY_P <= 1.0

    def inside_outer(self, x, y, z):
        a, ba, bp = self.outer(z)
        return self._superellipse(x, y, a, ba, bp)

    def inside_lean(self, x, y, z):
        a, b = self.lean_ab(z)
        return self._superellipse(x, y, a, b, b)

    def max_radius(self, z) -> float:
        a, ba, bp = self.outer(np.asarray(z, float))
        t = np.linspace(0, 2 * np.pi, 721)
        c, s = np.cos(t), np.sin(t)
        ex = np.abs(c) ** (2 / _BODY_P) * np.sign(c)
        ey = np.abs(s) ** (2 / _BODY_P) * np.sign(s)
        r = 0.0
        for ai, bai, bpi in zip(np.atleast_1d(a), np.atleast_1d(ba), np.atleast_1d(bp),
                                strict=True):
            y = np.where(ey < 0, bai, bpi) * ey
            r = max(r, float(np.hypot(ai * ex, y).max()))
        return r


def _check_options(bmi, region, unseen, n_slices, shape, oversample, pixel_mm, slice_mm,
                   z_center_mm) -> tuple[float, float, float]:
    """Validate ``make_phantom``'s options; returns the window centre and its z range (mm)."""
    if bmi not in BMI_CLASSES:
        raise ValueError(f"bmi must be one of {sorted(BMI_CLASSES)}, got {bmi!r}")
    if region not in REGIONS:
        raise ValueError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
    if unseen is not None and unseen not in UNSEEN_FEATURES:
        raise ValueError(f"unseen must be None or one of {UNSEEN_FEATURES}, got {unseen!r}")
    for name, v in (("n_slices", n_slices), ("shape", shape), ("oversample", oversample)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("pixel_mm", pixel_mm), ("slice_mm", slice_mm)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive and finite, got {v!r}")
    zc = REGIONS[region] if z_center_mm is None else float(z_center_mm)
    z_lo, z_hi = zc - n_slices * slice_mm / 2, zc + n_slices * slice_mm / 2
    if z_lo < Z_CONTROL_MM[0] or z_hi > Z_CONTROL_MM[-1]:
        raise ValueError(
            f"slice window {z_lo:.0f}..{z_hi:.0f} mm leaves the phantom's body range "
            f"{Z_CONTROL_MM[0]:.0f}..{Z_CONTROL_MM[-1]:.0f} mm; use fewer slices or another "
            "z_center_mm"
        )
    if unseen is not None and not (z_lo <= 70.0 and z_hi >= 110.0):
        raise ValueError(
            f"unseen feature {unseen!r} lives at the bladder (z 70-110 mm), outside the window "
            f"{z_lo:.0f}..{z_hi:.0f} mm; use region='pelvis'"
        )
    return zc, z_lo, z_hi


def _jitters(rng: np.random.Generator):
    """``J(s)``: a position jitter in mm, uniform in ``[-s, s]``; ``S()``: a size factor in
    ``[0.9, 1.1]``. The painters below draw them in a fixed order: reordering any draw changes
    every phantom after it."""
    def J(s: float = 8.0) -> float:
        return float(rng.uniform(-s, s))

    def S() -> float:
        return float(rng.uniform(0.9, 1.1))

    return J, S


def _paint_torso(g: _Grid, body: BodyOutline) -> None:
    """Fat everywhere inside the outline, lean tissue inside (thinner fat at the back), and the
    rib cage: a thin bony band just inside the lean outline, interrupted between ribs."""
    L, big = LABELS, 1e4
    g.paint(L["fat"], body.inside_outer, (-big, big, -big, big, -big, big))
    g.paint(L["soft_tissue"], body.inside_lean, (-big, big, -big, big, -big, big),
            where=L["fat"])

    def ribs(x, y, z):
        a, b = body.lean_ab(z)
        q = (np.abs(x / (a * 0.93)) ** _BODY_P + np.abs(y / (b * 0.93)) ** _BODY_P) ** (1 / _BODY_P)
        band = (q <= 1.0) & (q >= 1.0 - 8.0 / np.minimum(a, b))
        phase = np.arctan2(y, x) * 6 + z / 12.0
        return band & (np.sin(phase) > 0.0) & (y < 0.8 * b)

    g.paint(L["bone"], ribs, (-big, big, -big, big, 440.0, 780.0))


def _paint_lungs(g: _Grid, rng: np.random.Generator, k: float) -> None:
    """Both lungs, in soft tissue only (painted before liver and heart, which displace their
    bases)."""
    L, (J, S) = LABELS, _jitters(rng)
    g.paint(L["lung"], *_ellipsoid((-78 * k + J(), 10 + J(), 650 + J(10)),
                                   (60 * S(), 78 * S(), 175 * S())), where=L["soft_tissue"])
    g.paint(L["lung"], *_ellipsoid((82 * k + J(), 15 + J(), 660 + J(10)),
                                   (52 * S(), 72 * S(), 160 * S())), where=L["soft_tissue"])


def _paint_liver(g: _Grid, rng: np.random.Generator, k: float) -> tuple:
    """Right lobe plus a left lobe crossing the midline anteriorly; returns the right lobe's
    ``(centre, radii)`` (where liver lesions go)."""
    L, (J, S) = LABELS, _jitters(rng)
    liver_main = ((-60 * k + J(), -5 + J(), 500 + J(10)), (95 * S(), 82 * S(), 95 * S()))
    g.paint(L["liver"], *_ellipsoid(*liver_main, rot_deg=-10))
    g.paint(L["liver"], *_ellipsoid((25 * k + J(), -40 + J(), 530 + J()),
                                    (62 * S(), 38 * S(), 48 * S())))
    return liver_main


def _paint_spleen(g: _Grid, rng: np.random.Generator, k: float) -> None:
    L, (J, S) = LABELS, _jitters(rng)
    g.paint(L["spleen"], *_ellipsoid((95 * k + J(), 45 + J(), 505 + J()),
                                     (35 * S(), 50 * S(), 55 * S()), rot_deg=30))


def _paint_kidneys(g: _Grid, rng: np.random.Generator, k: float) -> None:
    L, (J, S) = LABELS, _jitters(rng)
    for side in (-1, 1):
        g.paint(L["kidney"], *_ellipsoid((side * 72 * k + J(5), 55 + J(5), 415 + J(10)),
                                         (28 * S(), 25 * S(), 55 * S()), rot_deg=side * 25))


def _paint_heart(g: _Grid, rng: np.random.Generator, k: float) -> None:
    """Myocardial shell around the blood pool, apex to the left and anterior."""
    L, (J, S) = LABELS, _jitters(rng)
    hc, hr = (30 * k + J(), -30 + J(), 625 + J()), np.array([58, 52, 62]) * S()
    g.paint(L["myocardium"], *_ellipsoid(hc, hr, rot_deg=30))
    g.paint(L["blood"], *_ellipsoid(hc, hr - 11.0, rot_deg=30))


def _paint_aorta(g: _Grid, rng: np.random.Generator) -> tuple[float, float]:
    """The descending aorta; returns its in-plane centre (lymph-node lesions go near it)."""
    J, S = _jitters(rng)
    ax, ay = 18.0 + J(4), 28.0 + J(4)
    g.paint(LABELS["blood"], *_tube_z(ax, ay, 12.0 * S(), 200.0, 640.0))
    return ax, ay


def _paint_spine(g: _Grid, sy: float) -> None:
    """Vertebral bodies (cortex + marrow, discs every ~32 mm) centred at ``y = sy``, the
    posterior arch and the spinal canal."""
    L = LABELS

    def vertebra_marrow(x, y, z):
        return ((x**2 + (y - sy) ** 2) <= 17.0**2) & ((z % 32.0) >= 8.0)

    g.paint(L["bone"], *_tube_z(0.0, sy, 20.0, 120.0, 800.0))
    g.paint(L["marrow"], vertebra_marrow, (-20, 20, sy - 20, sy + 20, 120.0, 800.0))
    g.paint(L["soft_tissue"], lambda x, y, z: ((x**2 + (y - sy) ** 2) <= 17.0**2)
            & ((z % 32.0) < 8.0), (-20, 20, sy - 20, sy + 20, 120.0, 800.0))
    g.paint(L["bone"], *_ellipsoid((0.0, sy + 42.0, 460.0), (14.0, 16.0, 340.0)))
    g.paint(L["soft_tissue"], *_tube_z(0.0, sy + 32.0, 8.0, 120.0, 800.0))


def _paint_pelvis(g: _Grid, k: float) -> None:
    """Iliac wings (marrow with cortex), femoral heads, sacrum, pubic symphysis."""
    L = LABELS
    for side in (-1, 1):
        wing = _ellipsoid((side * 105 * k, 35.0, 175.0), (48.0, 22.0, 65.0), rot_deg=-side * 35)
        g.paint(L["bone"], *wing)
        inner = _ellipsoid((side * 105 * k, 35.0, 175.0), (44.0, 17.0, 61.0), rot_deg=-side * 35)
        g.paint(L["marrow"], *inner)
        g.paint(L["bone"], *_sphere((side * 88 * k, 12.0, 45.0), 25.0))
        g.paint(L["marrow"], *_sphere((side * 88 * k, 12.0, 45.0), 21.0))
    g.paint(L["bone"], *_ellipsoid((0.0, 75.0 * k, 150.0), (45.0, 18.0, 55.0)))
    g.paint(L["marrow"], *_ellipsoid((0.0, 75.0 * k, 150.0), (41.0, 14.0, 51.0)))
    g.paint(L["bone"], *_ellipsoid((0.0, -70.0 * k, 45.0), (22.0, 10.0, 22.0)))


def _paint_bladder(g: _Grid, rng: np.random.Generator, k: float, unseen: str | None):
    """The bladder: normal, or (``unseen`` "bladder"/"both") bilobed with the very hot urine of
    label ``bladder_unseen``. Returns its centre and radii."""
    L, (J, _) = LABELS, _jitters(rng)
    bc = (J(6), -45.0 * k + J(6), 92.0 + J(5))
    br = np.array([42.0, 32.0, 32.0]) * rng.uniform(0.8, 1.2, size=3)
    if unseen in ("bladder", "both"):
        label = L["bladder_unseen"]
        g.paint(label, *_ellipsoid(bc, br * [1.15, 1.0, 0.9], rot_deg=15))
        side = rng.choice([-1.0, 1.0])
        dc = (bc[0] + side * (br[0] + 8.0), bc[1] + 0.5 * br[1], bc[2] + J(4))
        g.paint(label, *_sphere(dc, float(rng.uniform(16.0, 22.0))))
        g.paint(label, *_tube_z(bc[0] + side * br[0], bc[1] + 0.4 * br[1], 7.0,
                                dc[2] - 7.0, dc[2] + 7.0))
    else:
        g.paint(L["bladder"], *_ellipsoid(bc, br))
    return bc, br


def _paint_catheter(g: _Grid, rng: np.random.Generator, body: BodyOutline, bc, br) -> list:
    """Suprapubic catheter: from the bladder through the abdominal wall, then draped over the
    skin towards one side (an in-plane hot line on a few slices). Returns its path (mm)."""
    zt = bc[2] + 0.6 * br[2]
    a_out, b_ant, _ = body.outer(zt + 20.0)
    side = rng.choice([-1.0, 1.0])
    pts = np.array([
        [bc[0], bc[1], bc[2]],
        [bc[0], bc[1] - 0.8 * br[1], zt],
        [bc[0], -b_ant - 4.0, zt + 20.0],
        [bc[0] + side * 0.55 * a_out, -0.95 * b_ant - 6.0, zt + 24.0],
        [bc[0] + side * 0.9 * a_out, -0.55 * b_ant - 6.0, zt + 26.0],
    ])
    g.paint(LABELS["catheter"], *_polyline_tube(pts, float(rng.uniform(2.5, 3.5))))
    return pts.tolist()


class _LesionPlacer:
    """Spheres placed fully inside their host organ (with a margin of host tissue all round, so
    the ROI and its surroundings are well defined) and inside the slice window ``z_lo..z_hi``;
    ``lesions`` lists the placed ones with their label, SUV and size."""

    def __init__(self, g: _Grid, rng: np.random.Generator, liver_suv: float, z_lo: float,
                 z_hi: float, min_margin: float) -> None:
        self.g, self.rng, self.liver_suv = g, rng, liver_suv
        self.z_lo, self.z_hi, self.min_margin = z_lo, z_hi, min_margin
        self.window_r = (z_hi - z_lo) / 2 - 0.5  # the largest sphere the slice window holds
        self.lesions: list[dict] = []

    def place(self, host_label: int, host_name: str, centre_box, radius: float,
              mandatory: bool, margin: float = 0.0) -> None:
        g, rng, lesions = self.g, self.rng, self.lesions
        (x0, x1), (y0, y1), (zlo, zhi) = centre_box
        radius = min(radius, self.window_r)  # short windows: smaller lesions
        zlo, zhi = max(zlo, self.z_lo + radius), min(zhi, self.z_hi - radius)
        if zlo >= zhi:
            if mandatory:
                raise RuntimeError(f"no room for a {host_name} lesion in this window")
            return
        for _ in range(300):
            c = (rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(zlo, zhi))
            inside, box = _sphere(c, radius + max(margin, self.min_margin))
            zsl, ysl, xsl = (g._range(g.z, box[4], box[5]), g._range(g.y, box[2], box[3]),
                             g._range(g.x, box[0], box[1]))
            blk = g.labels[zsl, ysl, xsl]
            m = np.broadcast_to(inside(g.x[xsl][None, None], g.y[ysl][None, :, None],
                                       g.z[zsl][:, None, None]), blk.shape)
            if m.sum() and np.all(blk[m] == host_label):
                lid = LESION_ID0 + len(lesions)
                name = f"lesion_{len(lesions) + 1}"
                n = g.paint(lid, *_sphere(c, radius))
                ratio = float(rng.uniform(*LESION_TO_LIVER))
                lesions.append({
                    "name": name, "label": lid, "host": host_name,
                    "class": lesion_class(radius),
                    "centre_mm": [float(v) for v in c], "radius_mm": float(radius),
                    "suv": ratio * self.liver_suv, "to_liver": ratio, "fine_voxels": n,
                })
                return
        if mandatory:
            raise RuntimeError(f"could not place a lesion inside the {host_name}")


def _paint_lesions(p: _LesionPlacer, liver_main, aorta: tuple[float, float], sy: float) -> None:
    """Liver lesions (large ones, radius >= LARGE_LESION_RADIUS_MM, first: they need the most
    room) when the liver is in the window, then lung, lymph-node and bone lesions by chance."""
    L, rng = LABELS, p.rng
    ax, ay = aorta
    (lx, ly, lz), (lrx, lry, lrz) = liver_main
    liver_in_window = lz - lrz < p.z_hi - 12 and lz + lrz > p.z_lo + 12
    if liver_in_window:
        liver_box = ((lx - 60, lx + 40), (ly - 50, ly + 50), (lz - 70, lz + 70))
        big_ok = p.window_r >= LARGE_LESION_RADIUS_MM
        for i in range(N_LARGE_LIVER if big_ok else 0):
            r = float(rng.uniform(LARGE_LESION_RADIUS_MM, min(LARGE_LESION_MAX_MM, p.window_r)))
            p.place(L["liver"], "liver", liver_box, r, mandatory=i == 0, margin=LARGE_MARGIN_MM)
        for i in range(N_SMALL_LIVER):
            p.place(L["liver"], "liver", liver_box, float(rng.uniform(*SMALL_LIVER_RADIUS_MM)),
                    mandatory=not big_ok and i == 0, margin=SMALL_MARGIN_MM)
    if rng.uniform() < 0.8:
        p.place(L["lung"], "lung", ((-120, 120), (-60, 80), (480, 780)),
                float(rng.uniform(4.0, 7.0)), mandatory=False)
    if rng.uniform() < 0.7:
        p.place(L["soft_tissue"], "lymph_node", ((ax - 45, ax + 45), (ay - 35, ay + 20),
                                                 (200, 600)), float(rng.uniform(5.0, 8.0)), False)
    if rng.uniform() < 0.5:
        p.place(L["marrow"], "bone", ((-14, 14), (sy - 14, sy + 14), (130, 790)),
                float(rng.uniform(5.0, 7.0)), mandatory=False)
    if p.z_lo < 200 and rng.uniform() < 0.8:
        p.place(L["soft_tissue"], "lymph_node", ((-90, 90), (-30, 40), (60, 200)),
                float(rng.uniform(5.0, 8.0)), mandatory=False)


def _value_maps(lab: np.ndarray, lesions: list[dict], suv: dict, kbq_per_suv: float,
                urine_suv: float) -> tuple[np.ndarray, np.ndarray]:
    """Activity (kBq/mL) and 511-keV attenuation (1/cm) of a label volume; fills in each
    lesion's ``activity_kbq_ml``."""
    L = LABELS
    act_lut = np.zeros(LESION_ID0 + len(lesions), np.float32)
    mu_lut = np.zeros_like(act_lut)
    for name, lid in L.items():
        act_lut[lid] = suv.get(name, 0.0) * kbq_per_suv
        mu_lut[lid] = MU_511_PER_CM[name]
    act_lut[L["catheter"]] = urine_suv * kbq_per_suv
    act_lut[L["bladder_unseen"]] = suv["bladder_unseen"] * kbq_per_suv
    for les in lesions:
        act_lut[les["label"]] = les["suv"] * kbq_per_suv
        mu_lut[les["label"]] = MU_511_PER_CM["lesion"]
        les["activity_kbq_ml"] = float(les["suv"] * kbq_per_suv)
    return act_lut[lab], mu_lut[lab]


def make_phantom(
    rng: np.random.Generator,
    *,
    bmi: str = "low",
    n_slices: int = 32,
    shape: int = 128,
    pixel_mm: float = 4.0,
    slice_mm: float = 4.0,
    region: str = "abdomen",
    z_center_mm: float | None = None,
    unseen: str | None = None,
    oversample: int = 2,
    axial_margin_mm: float = 8.0,
) -> Phantom:
    """Draw one patient from ``rng`` and rasterise it on the slice window.

    ``bmi`` is the class ("low": BMI 18.5-23, "high": 28-35); the BMI itself is drawn uniformly.
    ``region`` picks the window centre (see ``REGIONS``) unless ``z_center_mm`` is given.
    ``unseen`` adds features absent from normal studies: "bladder" (bilobed, SUV 60-100),
    "catheter" (a suprapubic urinary catheter filled with urine), or "both"; they need the pelvis.
    """
    zc, z_lo, z_hi = _check_options(bmi, region, unseen, n_slices, shape, oversample, pixel_mm,
                                     slice_mm, z_center_mm)
    bmi_value = float(rng.uniform(*BMI_CLASSES[bmi]))
    height_m = float(rng.uniform(1.60, 1.90))
    weight_kg = bmi_value * height_m**2
    dose_mbq = DOSE_MBQ_PER_KG * weight_kg
    decay = 0.5 ** (UPTAKE_TIME_S / F18_HALF_LIFE_S)
    kbq_per_suv = dose_mbq * 1e3 * decay / (weight_kg * 1e3)  # kBq/mL per SUV unit (1 g = 1 mL)
    suv = {k: float(rng.uniform(*v)) for k, v in SUV_RANGES.items()}

    body = BodyOutline(bmi_value, rng)
    fov_r = shape * pixel_mm / 2 - pixel_mm / math.sqrt(2)
    zs_check = np.linspace(z_lo, z_hi, 9)
    if body.max_radius(zs_check) > fov_r:
        raise ValueError(
            f"the body (BMI {bmi_value:.1f}) does not fit the {shape * pixel_mm:.0f}-mm FOV "
            f"({shape} x {pixel_mm} mm pixels); use a larger shape or pixel_mm"
        )

    ov = oversample
    fp, fs = pixel_mm / ov, slice_mm / ov
    margin = int(math.ceil(axial_margin_mm / fs))
    zf = z_lo + (np.arange(-margin, n_slices * ov + margin) + 0.5) * fs
    g = _Grid(shape * ov, fp, zf)
    k = body.k

    # Organs in painting order (a later one overwrites an earlier one), each drawing its own
    # random shape parameters from ``rng``: the order fixes every phantom of a seed.
    _paint_torso(g, body)
    _paint_lungs(g, rng, k)
    liver_main = _paint_liver(g, rng, k)
    _paint_spleen(g, rng, k)
    _paint_kidneys(g, rng, k)
    _paint_heart(g, rng, k)
    aorta = _paint_aorta(g, rng)
    sy = 62.0 * k
    _paint_spine(g, sy)
    _paint_pelvis(g, k)
    bc, br = _paint_bladder(g, rng, k, unseen)
    urine_suv = suv["bladder_unseen" if unseen in ("bladder", "both") else "bladder"]
    suv["bladder_urine"] = urine_suv
    catheter_path = (_paint_catheter(g, rng, body, bc, br) if unseen in ("catheter", "both")
                     else None)
    placer = _LesionPlacer(g, rng, suv["liver"], z_lo, z_hi, min_margin=fp)
    _paint_lesions(placer, liver_main, aorta, sy)
    lesions = placer.lesions

    lab = g.labels
    activity_fine, mu_fine = _value_maps(lab, lesions, suv, kbq_per_suv, urine_suv)
    inner = lab[margin: margin + n_slices * ov]
    n = shape

    def block_mean(v):
        return v[margin: margin + n_slices * ov].reshape(n_slices, ov, n, ov, n, ov).mean(
            axis=(1, 3, 5), dtype=np.float64).astype(np.float32)

    labels = majority_labels(inner, ov)

    names = dict(LABELS)
    for les in lesions:
        names[les["name"]] = les["label"]
        les["voxels"] = int((labels == les["label"]).sum())

    meta = {
        "bmi_class": bmi, "bmi": bmi_value, "height_m": height_m, "weight_kg": weight_kg,
        "injected_dose_mbq": dose_mbq, "uptake_time_s": UPTAKE_TIME_S,
        "kbq_ml_per_suv": kbq_per_suv, "suv": suv, "region": region,
        "z_center_mm": zc, "unseen": unseen, "fat_thickness_mm": body.fat,
        "lean_scale": body.k, "catheter_path_mm": catheter_path,
    }
    return Phantom(
        activity=block_mean(activity_fine), mu=block_mean(mu_fine), labels=labels,
        label_names=names, activity_fine=activity_fine, mu_fine=mu_fine, margin=margin,
        oversample=ov, pixel_mm=pixel_mm, slice_mm=slice_mm,
        z_mm=z_lo + (np.arange(n_slices) + 0.5) * slice_mm, lesions=lesions, meta=meta,
        labels_fine=lab,
    )


def majority_labels(fine: np.ndarray, ov: int) -> np.ndarray:
    """The majority label of each ``ov^3`` block of a fine label volume ``(Z ov, N ov, N ov)``
    (ties: the smallest label id), int16 ``(Z, N, N)``."""
    zf, nf, _ = fine.shape
    nz, n = zf // ov, nf // ov
    blocks = fine.reshape(nz, ov, n, ov, n, ov).transpose(0, 2, 4, 1, 3, 5).reshape(
        nz, n, n, ov**3)
    present = np.unique(blocks)
    counts = np.stack([(blocks == v).sum(-1) for v in present], axis=-1)
    return present[np.argmax(counts, axis=-1)].astype(np.int16)
