"""Flat-ground pair sets: a procedural satellite texture and camera views rendered from it.

Until (and besides) the simulator, this gives the network something learnable and the
tests something real: every ground image is the exact flat-ground homography view of the
satellite texture from the true pose (the geometry `bev_projection` assumes), so a trained
model must recover the pose. Written with `cvgl_ros.datasets.pairs.PairWriter`.

    write_flat_pairs(DS, {"train": 64, "same_area": 16, "cross_area": 16}, seed=0)
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from cvgl_ros.datasets.pairs import PairWriter
from cvgl_ros.geo.yaw import wrap_angle


def flat_texture(size_px: int, mpp: float, seed: int) -> np.ndarray:
    """A north-up RGB texture (size_px square, `mpp` m/px): fields, roads with markings, plots, trees."""
    rng = np.random.default_rng(seed)
    low = rng.random((size_px // 32 + 2, size_px // 32 + 2, 3)).astype(np.float32)
    base = cv2.resize(low, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    palette = np.array([[90, 120, 60], [120, 110, 80], [70, 100, 50]], np.float32)
    img = (palette[0] * (0.6 + 0.5 * base[..., :1]) + palette[1] * 0.3 * base[..., 1:2]).clip(0, 255)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    img = img.clip(0, 255).astype(np.uint8)
    px = lambda metres: max(1, int(round(metres / mpp)))  # noqa: E731
    for _ in range(max(2, int(size_px * size_px * mpp * mpp / 150))):                 # plots and roofs
        centre = rng.uniform(0, size_px, 2)
        box = ((float(centre[0]), float(centre[1])), (float(rng.uniform(px(4), px(20))), float(rng.uniform(px(4), px(20)))),
               float(rng.uniform(0, 180)))
        colour = tuple(int(c) for c in rng.integers(40, 230, 3))
        cv2.fillPoly(img, [cv2.boxPoints(box).astype(np.int32)], colour)
    for _ in range(max(2, int(size_px * mpp / 30))):                              # roads with dashed markings
        a = rng.uniform(0, size_px, 2)
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)]) * size_px * 1.5
        p0, p1 = (a - d).astype(int), (a + d).astype(int)
        cv2.line(img, tuple(p0), tuple(p1), (70, 70, 75), px(7))
        n = int(np.linalg.norm(p1 - p0) / px(6))
        for i in range(0, n, 2):
            q0 = p0 + (p1 - p0) * i / n
            q1 = p0 + (p1 - p0) * (i + 1) / n
            cv2.line(img, tuple(q0.astype(int)), tuple(q1.astype(int)), (235, 235, 235), px(0.3))
    for _ in range(int(size_px * size_px * mpp * mpp / 60)):                          # trees
        c = tuple(int(v) for v in rng.uniform(0, size_px, 2))
        cv2.circle(img, c, int(rng.uniform(px(1), px(3))), (30, int(rng.integers(60, 100)), 30), -1)
    return img


def render_ground_view(texture: np.ndarray, mpp: float, east: float, north: float, yaw: float,
                       k: np.ndarray, image_hw: tuple[int, int], height_m: float, supersample: int = 2) -> np.ndarray:
    """The flat-ground view of `texture` (centred at map (0, 0)) from a camera at (east, north),
    height `height_m`, looking along `yaw` (ENU) with a level optical axis."""
    h, w = image_hw
    s = supersample
    u, v = np.meshgrid((np.arange(w * s) + 0.5) / s - 0.5, (np.arange(h * s) + 0.5) / s - 0.5)
    x = (u - k[0, 2]) / k[0, 0]
    y = (v - k[1, 2]) / k[1, 1]
    below = y > 1e-4
    t = np.where(below, height_m / np.where(below, y, 1.0), 0.0)      # forward distance of the ground hit
    forward, left = t, -x * t
    c, sn = math.cos(yaw), math.sin(yaw)
    e = east + c * forward - sn * left
    n = north + sn * forward + c * left
    size = texture.shape[0]
    col = np.where(below, e / mpp + (size - 1) / 2, -1).astype(np.float32)
    row = np.where(below, (size - 1) / 2 - n / mpp, -1).astype(np.float32)
    img = cv2.remap(texture, col, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110))
    img = img.astype(np.float32)
    haze = np.clip((np.where(below, t, 1e9) - 40.0) / 60.0, 0, 1)[..., None]
    img = img * (1 - haze) + np.array([170, 185, 200], np.float32) * haze
    sky = np.linspace(150, 210, h * s, dtype=np.float32)[:, None, None] * np.array([0.75, 0.85, 1.0], np.float32)
    img = np.where(below[..., None], img, np.broadcast_to(sky, img.shape))
    return cv2.resize(img.clip(0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA)


def cut_patch(texture: np.ndarray, mpp: float, east: float, north: float, size_px: int) -> np.ndarray:
    """North-up patch of `size_px` at the texture's resolution centred at (east, north)."""
    size = texture.shape[0]
    cx, cy = east / mpp + (size - 1) / 2, (size - 1) / 2 - north / mpp
    return cv2.getRectSubPix(texture, (size_px, size_px), (float(cx), float(cy)))


def write_flat_pairs(path: str | Path, counts: dict[str, int], seed: int = 0, *, image_hw=(128, 512),
                     patch_px: int = 256, patch_mpp: float = 0.2, max_offset_m: float = 20.0,
                     yaw_prior_deg: float = 10.0, height_m: float = 1.6, hfov_deg: float = 90.0,
                     world_size_m: float = 240.0) -> Path:
    """Write a pair data set of flat-ground views; `cross_area` pairs come from another texture."""
    h, w = image_hw
    f = (w / 2) / math.tan(math.radians(hfov_deg) / 2)
    k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)
    size_px = int(world_size_m / patch_mpp)
    meta = {"source": "flat_pairs", "image_hw": [h, w], "patch_px": patch_px, "patch_mpp": patch_mpp,
            "camera_height_m": height_m, "max_offset_m": max_offset_m, "yaw_prior_deg": yaw_prior_deg}
    textures = {"flat-a": flat_texture(size_px, patch_mpp, seed), "flat-b": flat_texture(size_px, patch_mpp, seed + 1)}
    rng = np.random.default_rng(seed + 100)
    margin = world_size_m / 2 - patch_px * patch_mpp / 2 - max_offset_m - 5
    with PairWriter(path, meta, shard_size=64) as writer:
        for world, info in (("flat-a", {"style": "flat", "seed": seed}), ("flat-b", {"style": "flat", "seed": seed + 1})):
            writer.add_world(world, info)
        for split, count in counts.items():
            world = "flat-b" if split == "cross_area" else "flat-a"
            for i in range(count):
                pos = rng.uniform(-margin, margin, 2)
                yaw = float(wrap_angle(rng.uniform(-math.pi, math.pi)))
                offset = rng.uniform(-max_offset_m, max_offset_m, 2)
                prior = pos - offset
                writer.add(split, {
                    "ground": render_ground_view(textures[world], patch_mpp, pos[0], pos[1], yaw, k, image_hw, height_m),
                    "satellite": cut_patch(textures[world], patch_mpp, prior[0], prior[1], patch_px),
                    "K": k, "camera_height_m": height_m, "offset_en_m": offset, "yaw_enu_rad": yaw,
                    "yaw_prior_enu_rad": float(wrap_angle(yaw + math.radians(rng.uniform(-yaw_prior_deg, yaw_prior_deg)))),
                    "position_en_m": pos, "world": world, "drive": 0, "frame": i,
                })
    return Path(path)
