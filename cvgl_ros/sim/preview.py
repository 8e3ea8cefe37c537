"""A preview of both views of a world at one pose: the ground camera frame beside the north-up
satellite patch cut from the world's tiles, with the camera's position and field of view
drawn on the patch (the same roads and buildings must appear in both)."""
from __future__ import annotations

import math
from pathlib import Path

from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.figures import pyplot, save_figure
from cvgl_ros.geo.grid import en_to_grid


def render_preview(world, east_m: float, north_m: float, yaw_enu_rad: float, out_png: str | Path, *,
                   width: int = 1024, height: int = 256, patch_px: int = 512, patch_mpp: float = 0.2,
                   appearance_seed: int = 0, time_s: float = 0.0) -> Path:
    """Write a PNG with the ground frame (left) and the satellite patch (right)."""
    from cvgl_ros.sim.ground_camera import GroundRenderer, default_camera
    from cvgl_ros.sim.world_mesh import MAT_WALL
    from cvgl_ros.tiles import PatchSampler

    if not world.contains(east_m, north_m):
        half = world.size_m / 2.0
        raise InputError(f"position ({east_m:g}, {north_m:g}) m is outside the world (|east|, |north| <= {half:g} m)")
    camera = default_camera(width, height)
    with GroundRenderer(world, camera, appearance_seed=appearance_seed) as renderer:
        ground = renderer.render(east_m, north_m, yaw_enu_rad, time_s=time_s)
        _, material, points = renderer.cast(east_m, north_m, yaw_enu_rad, time_s=time_s)
    facades = points[material == MAT_WALL][::3]
    with PatchSampler(world.tiles_path) as sampler:
        patch = sampler.patch_enu(world.datum, east_m, north_m, patch_px, patch_mpp)

    fig = pyplot().figure(figsize=(16.0, 4.4), dpi=110)
    grid = fig.add_gridspec(1, 2, width_ratios=[width / height, 1.7], wspace=0.03)
    ax_g = fig.add_subplot(grid[0])
    ax_s = fig.add_subplot(grid[1])
    ax_g.imshow(ground)
    ax_g.set_title(f"ground camera {width}x{height} (KITTI intrinsics, 1.65 m), appearance {appearance_seed}: "
                   f"sun az {renderer.appearance.sun_azimuth_deg:.0f} deg, el "
                   f"{renderer.appearance.sun_elevation_deg:.0f} deg, {renderer.appearance.season}", fontsize=9)
    ax_g.axis("off")
    ax_s.imshow(patch.rgb)
    if len(facades):
        fc, fr = en_to_grid(facades[:, 0], facades[:, 1], east_m, north_m, patch_px, patch_px, patch_mpp)
        inside = (fc >= 0) & (fc < patch_px) & (fr >= 0) & (fr < patch_px)
        ax_s.scatter(fc[inside], fr[inside], s=0.6, c="cyan", alpha=0.5, linewidths=0,
                     label="facades the camera sees")
        ax_s.legend(loc="lower left", fontsize=7, markerscale=8, framealpha=0.6)
    c, r = en_to_grid(east_m, north_m, east_m, north_m, patch_px, patch_px, patch_mpp)
    hfov = 2.0 * math.atan(camera.width / 2.0 / camera.k[0, 0])
    reach_m = patch_px * patch_mpp * 0.45
    for side in (-1.0, 1.0):
        a = yaw_enu_rad + side * hfov / 2.0
        ce, rn = en_to_grid(east_m + reach_m * math.cos(a), north_m + reach_m * math.sin(a), east_m, north_m,
                            patch_px, patch_px, patch_mpp)
        ax_s.plot([c, ce], [r, rn], color="yellow", lw=1.2)
    ce, rn = en_to_grid(east_m + 6 * math.cos(yaw_enu_rad), north_m + 6 * math.sin(yaw_enu_rad), east_m, north_m,
                        patch_px, patch_px, patch_mpp)
    ax_s.annotate("", xy=(ce, rn), xytext=(c, r), arrowprops=dict(arrowstyle="->", color="red", lw=2))
    ax_s.plot([c], [r], "o", color="red", ms=4)
    ax_s.set_title(f"satellite z{sampler.zoom} tiles, north up, {patch_px * patch_mpp:.0f} m, sun az "
                   f"{world.sun.azimuth_deg:.0f} deg el {world.sun.elevation_deg:.0f} deg", fontsize=9)
    ax_s.axis("off")
    fig.suptitle(f"{world.style} world seed {world.seed} at E {east_m:.1f} m, N {north_m:.1f} m, yaw "
                 f"{math.degrees(yaw_enu_rad):.1f} deg (ENU)", fontsize=10)
    return save_figure(fig, out_png, bbox_inches="tight")
