"""The particle-filter node's parameters (`PARAMS`): its own (`FilterNodeParameters`), and the
particle filter's as `filter.<name>`, one for every field of `ParticleFilterConfig`, with the
type, default, range and description that field declares; `filter_config` makes the filter's
configuration of them."""
from __future__ import annotations

from typing import Any, ClassVar

from cvgl_ros.config import setting, specs
from cvgl_ros.filter.particle_filter import ParticleFilterConfig
from cvgl_ros.nodes.parameters import MountingParameters, params_of

# Fixed for a node's life: the particle array's size and the filter's mode.
STRUCTURAL = ("num_particles", "use_cross_view")
FILTER_PREFIX = "filter."


class FilterNodeParameters(MountingParameters):
    """The node's own parameters (the filter's are ParticleFilterConfig's)."""

    what: ClassVar[str] = "parameter"

    datum: Any = setting(None, "map frame origin as [lat_deg, lon_deg, alt_m] (ENU, REP-105); unset: anchor at the "
        "first valid GNSS fix")
    seed: int = setting(0, "random seed of the particle filter", ge=0, le=2**31 - 1)
    map_frame: str = setting("map", "frame of the published poses (ENU at the datum)")
    base_link_frame: str = setting("base_link", "the vehicle's frame: child of /cvgl/odometry and of the TF")
    odom_frame: str = setting("odom", "odometry's frame: with odom -> base_link on /tf, the TF is map -> odom")
    publish_tf: bool = setting(True, "publish map -> odom (odom -> base_link on /tf) or else map -> base_link on /tf")
    odom_tf_max_gap_s: float = setting(0.5, "odom -> base_link farther than this from a pose's stamp counts as none "
        "(the TF is then map -> base_link), s", ge=0.0, le=10.0)
    gnss_frame: str = setting("gnss", "frame_id of the fused /cvgl/fix")
    gnss_antenna_frame: str = setting("", "the GNSS antenna's TF frame on /tf_static (filter.antenna_* from it); "
        "empty: the frame_id of the NavSatFix, 'gnss' until a fix arrives")
    max_published_particles: int = setting(300, "particles sent on /cvgl/particles (a subsample)", ge=0, le=100_000)
    path_min_step_m: float = setting(0.5, "a pose is added to /cvgl/path after moving this far, m", ge=0.0, le=100.0)
    path_max_poses: int = setting(2000, "the oldest poses of /cvgl/path are dropped beyond this", ge=1, le=1_000_000)
    path_period_s: float = setting(1.0, "/cvgl/path is published at most this often (message time), s",
        ge=0.0, le=3600.0)
    particles_period_s: float = setting(0.2, "/cvgl/particles is published at most this often (message time), s: a "
        "300-particle PoseArray costs the node ~5 ms", ge=0.0, le=3600.0)
    diagnostics_period_s: float = setting(1.0, "period of /diagnostics, s (wall clock)", ge=0.05, le=60.0)
    retrieval_fusion: str = setting("auto", "coarse stage: fuse /cvgl/retrieval grid scores (seed 001 Eq. 5) when "
        "the estimate's 3-sigma exceeds the dense patch or the estimate is lost (auto), on every frame (always), or "
        "never (off)", choices=("auto", "always", "off"))



def filter_config(p: dict) -> ParticleFilterConfig:
    """The `filter.*` parameters of `p` (name -> value) as the filter's configuration."""
    return ParticleFilterConfig(**{s.name: p[FILTER_PREFIX + s.name] for s in specs(ParticleFilterConfig)})


PARAMS = [
    *params_of(FilterNodeParameters),
    *params_of(ParticleFilterConfig, FILTER_PREFIX, live=lambda name: name not in STRUCTURAL),
]
