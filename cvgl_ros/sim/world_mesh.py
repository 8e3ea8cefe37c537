"""Triangle meshes of a world's 3-D scene for ray casting, with per-triangle attributes.

Every triangle carries a material (`MAT_*`), the index of the object it belongs to (building,
tree or car) and, for building walls, the index of its wall in a wall table (origin, direction
and length of the wall's base line) so that facades can be textured in wall coordinates
(metres along the wall, metres above the ground).

- ground: one large quad at z = 0 reaching `GROUND_REACH_M` beyond the world;
- buildings: four walls, a flat roof or a gable roof (two slopes, two gable-end triangles
  that count as walls);
- trees: a square trunk and a crown (an ellipsoid from a subdivided icosahedron with its
  vertices jittered for an irregular outline; conifers get a cone);
- cars: a lower body box and a cabin box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAT_GROUND, MAT_WALL, MAT_ROOF, MAT_TRUNK, MAT_CROWN, MAT_CAR = range(6)
GROUND_REACH_M = 2500.0


@dataclass
class Mesh:
    """Triangles (T,3,3) float32 with attributes: material (T,) uint8, obj (T,) int32, wall (T,) int32."""

    tris: np.ndarray
    material: np.ndarray
    obj: np.ndarray
    wall: np.ndarray

    @staticmethod
    def concat(meshes: list["Mesh"]) -> "Mesh":
        meshes = [m for m in meshes if len(m.tris)]
        if not meshes:
            return Mesh(np.zeros((0, 3, 3), np.float32), np.zeros(0, np.uint8), np.zeros(0, np.int32),
                        np.zeros(0, np.int32))
        return Mesh(np.concatenate([m.tris for m in meshes]), np.concatenate([m.material for m in meshes]),
                    np.concatenate([m.obj for m in meshes]), np.concatenate([m.wall for m in meshes]))


def _mesh(tris: list, material: int, obj: list, wall: list | None = None) -> Mesh:
    t = np.asarray(tris, np.float32).reshape(-1, 3, 3)
    return Mesh(t, np.full(len(t), material, np.uint8), np.asarray(obj, np.int32).reshape(-1),
                np.asarray(wall if wall is not None else [-1] * len(t), np.int32).reshape(-1))


def _quad(p0, p1, p2, p3) -> list:
    """Two triangles of the quad p0-p1-p2-p3 (in order around it)."""
    return [[p0, p1, p2], [p0, p2, p3]]


@dataclass
class WallTable:
    origin_en: np.ndarray     # (W,2) start of the wall's base line
    direction_en: np.ndarray  # (W,2) unit vector along the wall
    length_m: np.ndarray      # (W,)
    building: np.ndarray      # (W,) building index
    door_u_m: np.ndarray      # (W,) position of a door along the wall, NaN if none


def ground_mesh(half_m: float) -> Mesh:
    r = half_m + GROUND_REACH_M
    return _mesh(_quad([-r, -r, 0], [r, -r, 0], [r, r, 0], [-r, r, 0]), MAT_GROUND, [0, 0])


def building_mesh(buildings, rng: np.random.Generator) -> tuple[Mesh, WallTable]:
    tris_w, obj_w, wall_w = [], [], []
    tris_r, obj_r = [], []
    origins, dirs, lengths, owner, doors = [], [], [], [], []
    for i, b in enumerate(buildings):
        c = b.corners()  # counter-clockwise: (-u-v), (+u-v), (+u+v), (-u+v)
        h = b.wall_height_m
        for k in range(4):
            p, q = c[k], c[(k + 1) % 4]
            w = len(origins)
            length = float(np.linalg.norm(q - p))
            origins.append(p)
            dirs.append((q - p) / max(length, 1e-9))
            lengths.append(length)
            owner.append(i)
            has_door = length > 5.0 and (b.kind in ("house", "apartment", "tower", "commercial", "barn")) and \
                rng.random() < (0.8 if k in (0, 2) else 0.3)
            doors.append(rng.uniform(0.25, 0.75) * length if has_door else math.nan)
            tris_w += _quad([*p, 0.0], [*q, 0.0], [*q, h], [*p, h])
            obj_w += [i, i]
            wall_w += [w, w]
        if b.roof == "gable" and b.roof_height_m > 0:
            u = np.array([math.cos(b.angle_rad), math.sin(b.angle_rad)])
            centre = np.asarray(b.center_en)
            r0 = centre - u * b.length_m / 2.0
            r1 = centre + u * b.length_m / 2.0
            top = h + b.roof_height_m
            tris_r += _quad([*c[0], h], [*c[1], h], [*r1, top], [*r0, top])   # -v slope
            tris_r += _quad([*c[2], h], [*c[3], h], [*r0, top], [*r1, top])   # +v slope
            obj_r += [i] * 4
            # gable ends belong to the short walls (k=1: +u end, k=3: -u end)
            for k, ridge in ((1, r1), (3, r0)):
                p, q = c[k], c[(k + 1) % 4]
                tris_w.append([[*p, h], [*q, h], [*ridge, top]])
                obj_w.append(i)
                wall_w.append(len(origins) - 4 + k)
        else:
            tris_r += _quad([*c[0], h], [*c[1], h], [*c[2], h], [*c[3], h])
            obj_r += [i, i]
    walls = _mesh(tris_w, MAT_WALL, obj_w, wall_w) if tris_w else Mesh.concat([])
    roofs = _mesh(tris_r, MAT_ROOF, obj_r) if tris_r else Mesh.concat([])
    table = WallTable(np.asarray(origins, float).reshape(-1, 2), np.asarray(dirs, float).reshape(-1, 2),
                      np.asarray(lengths, float), np.asarray(owner, np.int64), np.asarray(doors, float))
    return Mesh.concat([walls, roofs]), table


def _unit_sphere(subdivisions: int = 1) -> np.ndarray:
    """Triangles (T,3,3) of a unit icosphere (an icosahedron split `subdivisions` times)."""
    g = (1.0 + math.sqrt(5.0)) / 2.0
    v = np.array([[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g], [0, -1, -g], [0, 1, -g],
                  [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                  [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                  [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    tris = v[f]
    tris /= np.linalg.norm(tris, axis=2, keepdims=True)
    for _ in range(subdivisions):
        a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
        ab, bc, ca = a + b, b + c, c + a
        ab /= np.linalg.norm(ab, axis=1, keepdims=True)
        bc /= np.linalg.norm(bc, axis=1, keepdims=True)
        ca /= np.linalg.norm(ca, axis=1, keepdims=True)
        tris = np.concatenate([np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return tris


def _cone(n: int = 8) -> np.ndarray:
    ang = np.linspace(0, 2 * math.pi, n + 1)
    tris = []
    for a0, a1 in zip(ang[:-1], ang[1:]):
        p0 = [math.cos(a0), math.sin(a0), -1.0]
        p1 = [math.cos(a1), math.sin(a1), -1.0]
        tris.append([p0, p1, [0.0, 0.0, 1.0]])
        tris.append([p1, p0, [0.0, 0.0, -1.0]])
    return np.array(tris)


def tree_mesh(trees, rng: np.random.Generator) -> Mesh:
    if not trees:
        return Mesh.concat([])
    sphere = _unit_sphere(1)
    # jitter shared vertices consistently: key by rounded position
    flat = sphere.reshape(-1, 3)
    _, inverse = np.unique(np.round(flat, 5), axis=0, return_inverse=True)
    n_unique = int(inverse.max()) + 1
    cone = _cone(8)
    e = np.array([t.east_m for t in trees])
    n = np.array([t.north_m for t in trees])
    r = np.array([t.canopy_radius_m for t in trees])
    base = np.array([t.canopy_base_m for t in trees])
    top = np.array([t.canopy_top_m for t in trees])
    trunk_r = np.array([t.trunk_radius_m for t in trees])
    conifer = np.array([t.conifer for t in trees])
    cz = 0.5 * (base + top)
    rz = 0.5 * (top - base)
    # crowns
    crowns = []
    objs = []
    for i in range(len(trees)):
        if conifer[i]:
            unit = cone
        else:
            scale = 1.0 + rng.uniform(-0.18, 0.18, n_unique)[inverse].reshape(sphere.shape[:2])[..., None]
            unit = sphere * scale
        tri = unit * np.array([r[i], r[i], rz[i]]) + np.array([e[i], n[i], cz[i]])
        crowns.append(tri)
        objs.append(np.full(len(tri), i))
    crown = Mesh(np.concatenate(crowns).astype(np.float32), np.full(sum(len(c) for c in crowns), MAT_CROWN, np.uint8),
                 np.concatenate(objs).astype(np.int32), np.full(sum(len(c) for c in crowns), -1, np.int32))
    # trunks: square prisms up to the crown's middle
    box = []
    for dx0, dy0, dx1, dy1 in ((-1, -1, 1, -1), (1, -1, 1, 1), (1, 1, -1, 1), (-1, 1, -1, -1)):
        box += _quad([dx0, dy0, 0], [dx1, dy1, 0], [dx1, dy1, 1], [dx0, dy0, 1])
    box = np.array(box, float)  # (8,3,3)
    trunk = box[None] * np.stack([trunk_r, trunk_r, cz], axis=1)[:, None, None, :] + \
        np.stack([e, n, np.zeros_like(e)], axis=1)[:, None, None, :]
    trunks = Mesh(trunk.reshape(-1, 3, 3).astype(np.float32), np.full(8 * len(trees), MAT_TRUNK, np.uint8),
                  np.repeat(np.arange(len(trees)), 8).astype(np.int32), np.full(8 * len(trees), -1, np.int32))
    return Mesh.concat([crown, trunks])


_BOX = np.array(
    _quad([-1, -1, 0], [1, -1, 0], [1, -1, 1], [-1, -1, 1]) + _quad([1, -1, 0], [1, 1, 0], [1, 1, 1], [1, -1, 1])
    + _quad([1, 1, 0], [-1, 1, 0], [-1, 1, 1], [1, 1, 1]) + _quad([-1, 1, 0], [-1, -1, 0], [-1, -1, 1], [-1, 1, 1])
    + _quad([-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]), float)  # (10,3,3) sides and top


def car_mesh(cars, first_obj: int = 0) -> Mesh:
    """Each car: a body box (0.18 m above the road up to the belt line at 0.58 h) and a cabin box on top."""
    if not len(cars):
        return Mesh.concat([])
    arr = np.array([[c.east_m, c.north_m, c.yaw_enu_rad, c.length_m, c.width_m, c.height_m] for c in cars], float)
    return car_mesh_arrays(arr, first_obj)


def car_mesh_arrays(cars: np.ndarray, first_obj: int = 0) -> Mesh:
    """`car_mesh` from an (N,6) array of east, north, yaw, length, width, height (vectorized)."""
    e, n, yaw, length, width, height = (cars[:, k][:, None, None] for k in range(6))
    belt = 0.58 * height
    box = _BOX[None]                                          # (1,10,3,3)
    body = np.stack([box[..., 0] * length / 2, box[..., 1] * width / 2,
                     0.18 + box[..., 2] * (belt - 0.18)], axis=-1)
    cabin = np.stack([box[..., 0] * length * 0.28 - 0.05 * length, box[..., 1] * width * 0.44,
                      belt + box[..., 2] * (height - belt)], axis=-1)
    local = np.concatenate([body, cabin], axis=1)             # (N,20,3,3)
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    x, y = local[..., 0:1], local[..., 1:2]
    world = np.concatenate([c * x - s * y + e[..., None], s * x + c * y + n[..., None], local[..., 2:3]], axis=-1)
    tris = world.reshape(-1, 3, 3).astype(np.float32)
    per = 2 * len(_BOX)
    obj = np.repeat(np.arange(len(cars)) + first_obj, per).astype(np.int32)
    return Mesh(tris, np.full(len(tris), MAT_CAR, np.uint8), obj, np.full(len(tris), -1, np.int32))
